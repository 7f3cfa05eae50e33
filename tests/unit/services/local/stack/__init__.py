"""tests/unit/services/local/stack."""
