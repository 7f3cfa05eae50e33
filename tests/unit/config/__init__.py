"""tests/unit/config."""
