"""tests/unit/models/drift."""
