"""tests/unit/models/evaluation."""
