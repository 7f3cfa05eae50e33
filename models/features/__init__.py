"""Feature encoding (hashing, crosses, online standardisation) and the online statistics."""

from models.features.encoding import EncodedBatch, FeatureEncoder, FeatureSpec

__all__ = ["EncodedBatch", "FeatureEncoder", "FeatureSpec"]
