"""tests/integration/services."""
