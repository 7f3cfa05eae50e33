"""tests/unit/models/features."""
