"""tests/integration/bench."""
