"""The control plane: the purge API and its durable log."""
