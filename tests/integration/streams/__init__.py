"""tests/integration/streams."""
