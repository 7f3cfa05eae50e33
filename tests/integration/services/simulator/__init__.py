"""tests/integration/services/simulator."""
