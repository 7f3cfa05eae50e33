"""tests/integration/services/registry."""
