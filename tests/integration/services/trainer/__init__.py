"""tests/integration/services/trainer."""
