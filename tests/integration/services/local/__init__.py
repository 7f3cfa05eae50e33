"""tests/integration/services/local."""
