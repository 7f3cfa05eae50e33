"""tests/integration/services/ops."""
