"""Image collections (stage 1's first link): one module per source kind, found by
:mod:`.registry`; :mod:`.items` is what they all yield.

Kinds: class-folder trees and flat folders (:mod:`.folder`), CSV manifests
(:mod:`.manifest`), IDX files (:mod:`.idx`), ``.npz`` files (:mod:`.npz`), Fashion-MNIST
(:mod:`.fashion_mnist`), WebDataset tar shards (:mod:`.webdataset`) and arrays in memory
(:mod:`.memory`, the library only). A source is an ordered list of :class:`Item` (id, label,
where the pixels are) plus class names; the order is deterministic (sorted paths, array
order) and is the row order of the cache.
"""

from bottleneck_transfer.features.sources.arrays import read_idx
from bottleneck_transfer.features.sources.fashion_mnist import FASHION_MNIST_CLASSES
from bottleneck_transfer.features.sources.items import (
    SPLIT_PARTS,
    Item,
    Source,
    Split,
    group_units,
    holdout_mask,
    id_origin,
    item_groups,
    item_hashes,
    split_source,
)
from bottleneck_transfer.features.sources.memory import open_arrays, open_texts
from bottleneck_transfer.features.sources.registry import open_source, reopen_source

__all__ = [
    "FASHION_MNIST_CLASSES",
    "SPLIT_PARTS",
    "Item",
    "Source",
    "Split",
    "group_units",
    "holdout_mask",
    "id_origin",
    "item_groups",
    "item_hashes",
    "open_arrays",
    "open_source",
    "open_texts",
    "read_idx",
    "reopen_source",
    "split_source",
]
