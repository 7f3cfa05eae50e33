"""tests/unit/models/training."""
