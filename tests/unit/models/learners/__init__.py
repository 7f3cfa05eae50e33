"""tests/unit/models/learners."""
