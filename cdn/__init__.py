"""Command line, process supervision and the few pieces every role shares."""
