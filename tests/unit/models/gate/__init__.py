"""tests/unit/models/gate."""
