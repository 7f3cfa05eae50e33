"""tests/unit/services/local."""
