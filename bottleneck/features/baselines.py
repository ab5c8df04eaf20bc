"""Baselines that measure the transfer gain: the same architecture with random weights, and
raw pixels (images) or TF-IDF (texts: :mod:`.text_baseline`). Each is extracted through the
normal path (TF-IDF: fitted on the train texts) and cached like any other base."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from bottleneck_transfer.errors import BaseModelError, BottleneckError
from bottleneck_transfer.features.bases import hub
from bottleneck_transfer.features.bases.common import PIXELS, Base, random_weights, weights_sha256
from bottleneck_transfer.features.bases.load import load_base
from bottleneck_transfer.features.cache.reader import FeatureCache
from bottleneck_transfer.features.choices import BASELINES
from bottleneck_transfer.features.extract import extract
from bottleneck_transfer.features.loop import cache_identity
from bottleneck_transfer.features.sources import reopen_source
from bottleneck_transfer.features.store import CacheStore
from bottleneck_transfer.fingerprint import fingerprint

#: Raw-pixel features are taken at most this many pixels a side (224x224x3 would be 150k).
PIXELS_MAX_SIZE = 32
#: The text baseline (:mod:`.text_baseline`): no Base, a cache of TF-IDF features.
TFIDF = "tfidf"
#: The ``weights`` a base's description gives randomly initialised weights (``--weights none``).
RANDOM_WEIGHTS = "none"


def randomized(base: Base, seed: int = 0) -> Base:
    """The same architecture and preprocessing with fresh (seeded) random weights."""
    hub.refuse_saved_model(base.description, "the random-base baseline")
    model = random_weights(base.model, seed)
    names = {layer.name for layer in model.layers}
    if "preprocess" in names:  # the frozen preprocessing map is not a weight to randomise
        model.get_layer("preprocess").set_weights(base.model.get_layer("preprocess").get_weights())
    model.trainable = False
    description = {
        **base.description,
        "weights": "none",
        "weights_seed": seed,
        "weights_sha256": weights_sha256(model),
    }
    return dataclasses.replace(base, model=model, description=description)


@contextmanager
def randomized_in_place(base: Base, seed: int = 0) -> Iterator[Base]:
    """:func:`randomized` of ``base`` running on ``base``'s own model: inside the block the
    model holds the random weights (same values, same description, so the same cache
    fingerprint), after it its own again. The model's compiled predict function serves both,
    where a model of its own is traced again (seconds per base, more than a sample's run)."""
    random = randomized(base, seed)
    own = base.model.get_weights()
    base.model.set_weights(random.model.get_weights())
    try:
        yield dataclasses.replace(random, model=base.model)
    finally:
        base.model.set_weights(own)


def raw_pixels(base: Base) -> Base:
    """Raw pixels of the same images (at most :data:`PIXELS_MAX_SIZE` a side), scaled to 0..1."""
    size = tuple(min(s, PIXELS_MAX_SIZE) for s in base.image_size)
    return load_base(PIXELS, image_size=size, channels=base.channels)


def baseline_bases(base: Base, names: Sequence[str]) -> dict[str, Base]:
    """Build the named baselines of ``base``.

    Raises
    ------
    BaseModelError
        For ``random-base`` of a base whose weights are random already: noise vs noise.
    """
    unknown = [n for n in names if n not in BASELINES]
    if unknown:
        raise BottleneckError(
            f"unknown baseline {unknown[0]!r}. Received: baseline={unknown[0]!r}; "
            f"valid: {', '.join(BASELINES)}"
        )
    if "random-base" in names and base.description.get("weights") == RANDOM_WEIGHTS:
        raise BaseModelError(
            f"the random-base baseline does not apply: the features of {base.name} come from "
            f"random weights already (weights={RANDOM_WEIGHTS}), so it would compare noise "
            "with noise; drop --baseline random-base, or extract with trained weights"
        )
    other = _OTHER_MODALITY[base.modality]
    wrong = [n for n in names if n in other]
    if wrong:
        valid = ", ".join(n for n in BASELINES if n not in other)
        raise BaseModelError(
            f"the {wrong[0]} baseline does not apply to a {base.modality} base ({base.name}); "
            f"its baselines are: {valid}"
        )
    builders = {"random-base": randomized, "raw-pixels": raw_pixels}
    return {name: builders[name](base) for name in names if name in builders}


#: The baselines that apply to the other modality only.
_OTHER_MODALITY = {"image": ("tfidf",), "text": ("raw-pixels",)}


def extract_baselines(
    train: str | Path,
    test: str | Path | None,
    names: Sequence[str],
    *,
    cache_dir: str | Path | None = None,
    base_path: str | Path | None = None,
    progress: bool | None = None,
) -> dict[str, tuple[Path, Path | None]]:
    """Extract (or reuse) baseline caches of the same images as ``train`` (and ``test``).

    The base is rebuilt from the train cache's provenance (``base_path`` points at a model
    file), the sources are reopened from it, and each baseline cache is keyed by its
    fingerprint in ``cache_dir`` (default: the train cache's folder).
    """
    from bottleneck_transfer.features.rebuild import rebuild_base

    store = CacheStore(cache_dir or Path(train).parent)
    out: dict[str, tuple[Path, Path | None]] = {}
    if TFIDF in names:  # no base to rebuild: the texts' TF-IDF (refused for image caches)
        from bottleneck_transfer.features.text_baseline import tfidf_caches

        out[TFIDF] = tfidf_caches(train, test, store)
    names = [name for name in names if name != TFIDF]
    if not names:
        return out
    with FeatureCache.open(train) as cache:
        described = cache.provenance
    base = rebuild_base(described["base"], base_path=base_path, cache_path=train)
    splits = {"train": Path(train), **({"test": Path(test)} if test else {})}
    for name, baseline in baseline_bases(base, names).items():
        paths: dict[str, Path] = {}
        for split, cache_path in splits.items():
            with FeatureCache.open(cache_path) as cache:
                source = reopen_source(cache.provenance["source"])
            identity = cache_identity(baseline, source, source.manifest())
            path = store.path_for(fingerprint(identity))
            extract(source, baseline, path, progress=progress)
            store.touch(path)
            paths[split] = path
        out[name] = (paths["train"], paths.get("test"))
    return out
