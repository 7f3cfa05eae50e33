"""tests/integration/services/local/stack."""
