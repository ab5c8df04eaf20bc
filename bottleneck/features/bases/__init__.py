"""Base models (stage 1): every kind of model becomes one frozen :class:`Base` mapping raw
pixels to features. :mod:`.registry` finds a base's kind, one module each
(:mod:`.application`, :mod:`.model_file`, :mod:`.pixels`, :mod:`.preset`,
:mod:`.saved_model`; the last two load through :mod:`.hub`); :mod:`.load` cuts and freezes
what the kind builds (:mod:`.built`). :mod:`.common` holds the Base and the shared
cut/pool/affine helpers, :mod:`.preprocessing` the preprocessing modes."""

from bottleneck_transfer.features.bases.common import POOLINGS, Base
from bottleneck_transfer.features.bases.load import load_base, load_layers

__all__ = ["POOLINGS", "Base", "load_base", "load_layers"]
