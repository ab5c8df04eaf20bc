"""``rank_bases``: sample, extract with each candidate, score, judge; and the winner's full
extraction, reusing its sample rows."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from bottleneck_transfer.errors import BottleneckError
from bottleneck_transfer.features.baselines import (
    baseline_bases,
    randomized_in_place,
)
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.features.choices import IMAGE_BASELINES
from bottleneck_transfer.features.extract import as_source
from bottleneck_transfer.features.loop import ExtractResult
from bottleneck_transfer.features.options import ExtractOptions
from bottleneck_transfer.features.sources import Source, item_groups
from bottleneck_transfer.features.store import CacheStore, default_cache_dir
from bottleneck_transfer.heads.training import LabeledData
from bottleneck_transfer.rank.candidates import Candidate, parse_candidate, unique_candidates
from bottleneck_transfer.rank.logme import hscore, logme
from bottleneck_transfer.rank.probe import probe, shared_groups
from bottleneck_transfer.rank.sample import SampleSize, sample_source, seed_cache, store_extract
from bottleneck_transfer.rank.verdict import (
    BaseResult,
    Cost,
    Ranking,
    estimate_agreement,
    extract_command,
    rank_results,
    verdict_text,
    write_report,
)

#: Where the winner's full cache goes in a report folder (it starts as its sample cache).
FULL_CACHE = "features.h5"


def _cost(cache: Path, result: ExtractResult, base: Any, n_images: int, store_dtype: str) -> Cost:
    """The base's cost from the sample extraction (recorded in the cache, also when reused)."""
    with FeatureCache.open(cache) as opened:
        rate = (opened.provenance.get("extraction") or {}).get("images_per_second")
        dim = opened.dim
    rate = rate or result.images_per_second
    return Cost(
        seconds_per_image=1.0 / rate if rate else float("nan"),
        weights_bytes=sum(
            math.prod(w.shape) * np.dtype(w.dtype).itemsize for w in base.model.weights
        ),
        feature_bytes_per_image=int(dim * np.dtype(store_dtype).itemsize),
        collection_images=n_images,
    )


def _declared(sample: Source, ids: list[str]) -> np.ndarray | None:
    """The sample's copies and declared groups (:func:`item_groups`) for the cache ``ids``."""
    groups = item_groups(sample)
    if groups is None:
        return None
    by_id = {item.id: int(g) for item, g in zip(sample.items, groups, strict=True)}
    return np.asarray([by_id[i] for i in ids], dtype=np.int64)


def rank_bases(
    source: str | Source,
    candidates: Sequence[Candidate | str | Mapping[str, Any]],
    *,
    sample: str | int = "50/class",
    settings: Mapping[str, Any] | None = None,
    baselines: Sequence[str] = IMAGE_BASELINES,
    cv: int = 5,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    classes: str | list | None = None,
    limit: int | None = None,
    groups: str | None = None,
    batch_size: int | None = None,
    workers: int | None = None,
    store_dtype: str = "float32",
    runtime: str = "keras",
    out: str | Path | None = None,
    progress: bool | None = None,
    echo: Callable[[str], Any] | None = None,
) -> Ranking:
    """Rank candidate bases on a sample of ``source`` before extracting everything.

    Parameters
    ----------
    source : str or Source
        The labelled collection (see :func:`features.sources.open_source`).
    candidates : sequence
        Bases as ``extract --base`` takes them, each optionally with its own settings
        (:mod:`rank.candidates`: ``"mobilenet_v2 weights=none"``).
    sample : str or int
        ``"N/class"`` or ``N`` in all (:class:`rank.sample.SampleSize`).
    settings : mapping, optional
        Settings every candidate shares (weights, image_size, pooling, layer, preprocess,
        trust_graph) unless it gives its own.
    baselines : sequence of str
        Probed beside each candidate on the same images (``random-base``: the candidate's
        architecture with random weights, skipped when its weights are random already;
        ``raw-pixels``).
    cv : int
        Folds of the probe's cross-validation on the sample.
    seed : int
        Seeds the sample, the folds, tuning and random weights.
    cache_dir : str or Path, optional
        The store the sample caches go to (default :func:`features.store.default_cache_dir`).
    classes, limit, groups
        As :func:`features.sources.open_source`'s (for a source given by name).
    batch_size, workers, store_dtype
        As :func:`features.extract.extract`'s.
    runtime : {"keras", "onnx", "auto"}
        How the candidates run (:mod:`features.runners`; the baselines run on Keras): the
        cost they report is the runtime's, and the printed command uses it.
    out : str or Path, optional
        A report folder: :func:`rank.verdict.write_report`'s files, plus the winner's sample
        cache as ``features.h5``, which the printed command completes with ``--update``.
    progress : bool, optional
        Extraction progress bars.
    echo : callable, optional
        Called with a line per step.

    Returns
    -------
    Ranking

    Examples
    --------
    >>> ranking = rank_bases(
    ...     "fashion-mnist:train",
    ...     ["data/bases/fashion_mnist_0-4.keras", "mobilenet_v2 weights=none image_size=32"],
    ...     sample="50/class",
    ...     classes="5-9",
    ... )  # doctest: +SKIP
    >>> print(ranking.verdict)  # doctest: +SKIP
    """
    started = time.perf_counter()
    say = echo or (lambda line: None)
    listed = unique_candidates(
        c if isinstance(c, Candidate) else parse_candidate(c) for c in candidates
    )
    size = SampleSize.parse(sample)
    collection = as_source(source, ExtractOptions(classes=classes, limit=limit, groups=groups))
    drawn = sample_source(collection, size, seed)
    extracting = {
        "batch_size": batch_size,
        "workers": workers,
        "store_dtype": store_dtype,
        "progress": progress,
    }
    shared = dict(settings or {})
    store = CacheStore(cache_dir or default_cache_dir())
    entries = [
        _extract_sample(
            candidate.build(shared, seed),
            candidate,
            drawn,
            store,
            baselines,
            {**extracting, "runtime": runtime},
            seed,
            say,
        )
        for candidate in listed
    ]
    results = _score(entries, drawn, len(collection), store_dtype, cv, seed, say)
    ranked = rank_results(results)
    winner = next(c for c in listed if c.label == ranked[0].label)
    full = str(Path(out) / FULL_CACHE) if out is not None else FULL_CACHE
    spec = collection.options.get("spec") or collection.root
    chosen = {"base": winner.base, **shared, **winner.settings}
    if runtime != "keras":
        chosen["runtime"] = runtime
    ranking = Ranking(
        source=spec,
        sample={
            "size": str(size),
            "seed": seed,
            "images": entries[0].result.rows,
            "collection_images": len(collection),
        },
        results=ranked,
        verdict=verdict_text(ranked),
        command=extract_command(spec, collection.options, chosen, full),
        estimate_agreement=estimate_agreement(ranked),
        seconds=time.perf_counter() - started,
        chosen=winner,
        chosen_base=next(e.base for e in entries if e.candidate is winner),
    )
    if out is not None:
        seed_cache(ranking.best.cache, full)
        write_report(ranking, out)
    return ranking


@dataclass
class _Extracted:
    """One candidate's sample extraction: its base, its cache, its baselines' caches."""

    candidate: Candidate
    base: Any
    result: ExtractResult
    baselines: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _extract_sample(
    base: Any,
    candidate: Candidate,
    drawn: Source,
    store: CacheStore,
    baselines: Sequence[str],
    extracting: dict[str, Any],
    seed: int,
    say: Callable[[str], Any],
) -> _Extracted:
    """Extract the sample with ``base`` and its baselines into ``store`` (baselines on Keras:
    the random-weights version on the base's own model, its weights swapped, so its
    compiled call is reused; raw pixels of one size once for every candidate)."""
    entry = _Extracted(candidate, base, store_extract(store, drawn, base, **extracting))
    say(
        f"{'reused   ' if entry.result.up_to_date else 'extracted'} {candidate.label}: "
        f"{entry.result.rows} sample rows  {entry.result.path.name}"
    )
    wanted = list(baselines)
    on_keras = {**extracting, "runtime": "keras"}
    if "random-base" in wanted:
        wanted.remove("random-base")
        if base.description.get("weights") == "none":
            entry.notes.append("its weights are random already: no random-base baseline")
        else:
            with randomized_in_place(base, seed) as random:
                entry.baselines["random-base"] = store_extract(
                    store, drawn, random, **on_keras
                ).path
    for name, baseline in baseline_bases(base, wanted).items():
        entry.baselines[name] = store_extract(store, drawn, baseline, **on_keras).path
    return entry


def _score(
    entries: list[_Extracted],
    drawn: Source,
    collection_images: int,
    store_dtype: str,
    cv: int,
    seed: int,
    say: Callable[[str], Any],
) -> list[BaseResult]:
    """Each candidate's scores on its sample cache, beside its baselines on the same folds
    (each cache read once, each baseline cache probed once)."""
    loaded: dict[Path, LabeledData] = {}
    for path in [e.result.path for e in entries] + [
        p for e in entries for p in e.baselines.values()
    ]:
        if path not in loaded:
            loaded[path] = LabeledData.from_cache(path)
    ids = loaded[entries[0].result.path].ids
    for path, data in loaded.items():
        if data.ids != ids:
            raise BottleneckError(
                f"the sample caches hold different images ({path.name}: {len(data.ids)} "
                f"rows, the first candidate's: {len(ids)}): an image read by one base failed "
                "for another; fix or remove the images that `bottleneck info` lists as failed"
            )
    linked = shared_groups(list(loaded.values()), _declared(drawn, ids))
    probed: dict[str, np.ndarray] = {}
    results = []
    for entry in entries:
        data = loaded[entry.result.path]
        say(f"probing   {entry.candidate.label}")
        results.append(
            BaseResult(
                label=entry.candidate.label,
                cache=entry.result.path,
                dim=data.space.dim,
                logme=logme(data.X, data.y),
                hscore=hscore(data.X, data.y),
                probe=probe(
                    data,
                    {name: loaded[path] for name, path in entry.baselines.items()},
                    linked=linked,
                    cv=cv,
                    seed=seed,
                    probed=probed,
                ),
                cost=_cost(
                    entry.result.path, entry.result, entry.base, collection_images, store_dtype
                ),
                notes=entry.notes,
            )
        )
    return results
