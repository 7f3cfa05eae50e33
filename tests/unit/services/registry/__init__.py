"""tests/unit/services/registry."""
