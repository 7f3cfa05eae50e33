"""tests/unit/services/simulator."""
