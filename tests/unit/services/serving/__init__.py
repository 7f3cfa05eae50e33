"""tests/unit/services/serving."""
