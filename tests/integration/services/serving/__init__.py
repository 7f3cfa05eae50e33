"""tests/integration/services/serving."""
