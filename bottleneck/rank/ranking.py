"""``rank_bases``: sample, extract with each candidate, score, judge; and the winner's full
extraction, reusing its sample rows."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from bottleneck_transfer.errors import BottleneckError
from bottleneck_transfer.features.baselines import baseline_bases
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
        weights_bytes=int(sum(np.asarray(w).nbytes for w in base.model.weights)),
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
    store = CacheStore(cache_dir or default_cache_dir())
    extracting = {
        "batch_size": batch_size,
        "workers": workers,
        "store_dtype": store_dtype,
        "progress": progress,
    }
    shared = dict(settings or {})
    entries = []
    for candidate in listed:
        base = candidate.build(shared, seed)
        result = store_extract(store, drawn, base, **extracting)
        say(
            f"{'reused   ' if result.up_to_date else 'extracted'} {candidate.label}: "
            f"{result.rows} sample rows  {result.path.name}"
        )
        notes = []
        wanted = list(baselines)
        if "random-base" in wanted and base.description.get("weights") == "none":
            wanted.remove("random-base")
            notes.append("its weights are random already: no random-base baseline")
        extra = {}
        for name, baseline in baseline_bases(base, wanted).items():
            extra[name] = store_extract(store, drawn, baseline, **extracting).path
        entries.append((candidate, base, result, extra, notes))
    datas = {c.label: LabeledData.from_cache(r.path) for c, _, r, _, _ in entries}
    extras = {
        (c.label, name): LabeledData.from_cache(path)
        for c, _, _, extra, _ in entries
        for name, path in extra.items()
    }
    ids = next(iter(datas.values())).ids
    for label, data in [*datas.items(), *((f"{k[1]} of {k[0]}", d) for k, d in extras.items())]:
        if data.ids != ids:
            raise BottleneckError(
                f"the sample caches hold different images ({label}: {len(data.ids)} rows, "
                f"the first candidate: {len(ids)}): an image read by one base failed for "
                "another; fix or remove the images that `bottleneck info` lists as failed"
            )
    linked = shared_groups([*datas.values(), *extras.values()], _declared(drawn, ids))
    results = []
    for candidate, base, result, extra, notes in entries:
        data = datas[candidate.label]
        say(f"probing   {candidate.label}")
        results.append(
            BaseResult(
                label=candidate.label,
                cache=result.path,
                dim=data.space.dim,
                logme=logme(data.X, data.y),
                hscore=hscore(data.X, data.y),
                probe=probe(
                    data,
                    {name: extras[(candidate.label, name)] for name in extra},
                    linked=linked,
                    cv=cv,
                    seed=seed,
                ),
                cost=_cost(result.path, result, base, len(collection), store_dtype),
                notes=notes,
            )
        )
    ranked = rank_results(results)
    winner = next(c for c in listed if c.label == ranked[0].label)
    full = str(Path(out) / FULL_CACHE) if out is not None else FULL_CACHE
    ranking = Ranking(
        source=collection.options.get("spec") or collection.root,
        sample={
            "size": str(size),
            "seed": seed,
            "images": len(ids),
            "collection_images": len(collection),
        },
        results=ranked,
        verdict=verdict_text(ranked),
        command=extract_command(
            collection.options.get("spec") or collection.root,
            collection.options,
            {"base": winner.base, **{k: v for k, v in {**shared, **winner.settings}.items()}},
            full,
        ),
        estimate_agreement=estimate_agreement(ranked),
        seconds=time.perf_counter() - started,
        chosen=winner,
    )
    if out is not None:
        seed_cache(ranking.best.cache, full)
        write_report(ranking, out)
    return ranking
