"""The HDF5 feature cache (format version 1): :mod:`.format` (layout, ids, checks),
:mod:`.partial` (the crash-safe partial folder and its lock), :mod:`.writer`, :mod:`.reader`
and :mod:`.tables` (Arrow/Parquet out).

Examples
--------
>>> from bottleneck_transfer.features.cache import FeatureCache
>>> with FeatureCache.open("c.h5") as cache:  # doctest: +SKIP
...     X, y = cache.arrays()
"""

from bottleneck_transfer.features.cache.reader import FeatureCache
from bottleneck_transfer.features.cache.writer import CacheWriter

__all__ = ["CacheWriter", "FeatureCache"]
