"""tests/integration/streams/joiner."""
