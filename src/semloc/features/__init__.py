"""Cached frozen-encoder features: the store format, its reader/writer and batch loading."""

from semloc.features.batch import FeatureBatch, FeatureDims, drop_pictures, swap_pictures
from semloc.features.store import FeatureStore, FeatureStoreWriter, ShardData

__all__ = [
    "FeatureBatch",
    "FeatureDims",
    "FeatureStore",
    "FeatureStoreWriter",
    "ShardData",
    "drop_pictures",
    "swap_pictures",
]
