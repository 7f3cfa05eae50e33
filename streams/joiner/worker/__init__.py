"""streams/joiner/worker."""
