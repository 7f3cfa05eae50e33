"""services/local."""
