"""The storage node: append-only volume files of checksummed fragment records behind HTTP."""
