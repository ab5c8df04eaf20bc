"""Base models (stage 1): every kind of model becomes one frozen :class:`Base` mapping raw
pixels to features. :mod:`.common` (the Base and the shared cut/pool/affine helpers),
:mod:`.preprocessing`, :mod:`.load` (applications, model files, raw pixels; the dispatch),
:mod:`.hub` (KerasHub presets and SavedModels)."""

from bottleneck_transfer.features.bases.common import POOLINGS, Base
from bottleneck_transfer.features.bases.load import load_base, load_layers

__all__ = ["POOLINGS", "Base", "load_base", "load_layers"]
