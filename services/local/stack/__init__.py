"""services/local/stack."""
