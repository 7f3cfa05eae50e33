"""tests/unit/services/trainer."""
