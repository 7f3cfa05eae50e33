"""tests/unit/services/ops."""
