"""services/serving."""
