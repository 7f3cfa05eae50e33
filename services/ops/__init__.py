"""services/ops."""
