"""``rank_bases``: sample, extract with each candidate, score, judge; and the winner's full
extraction, reusing its sample rows.

Candidates are bases as ``extract --base`` takes them, each optionally with its own settings
(:mod:`rank.candidates`: ``"mobilenet_v2 weights=none"``); ``settings`` they share (weights,
image_size, pooling, layer, preprocess, trust_graph) apply unless a candidate gives its own.
Baselines are probed beside each candidate on the same images: ``random-base`` is the
candidate's architecture with random weights (skipped when its weights are random already),
``raw-pixels`` the images themselves. The candidates run on ``runtime`` (:mod:`features.runners`;
the baselines on Keras): the cost they report is the runtime's, and the printed command uses
it. A report folder ``out`` holds :func:`rank.verdict.write_report`'s files, plus the winner's
sample cache as ``features.h5``, which the printed command completes with ``--update``.

Example::

    ranking = rank_bases(
        "fashion-mnist:train",
        ["data/bases/fashion_mnist_0-4.keras", "mobilenet_v2 weights=none image_size=32"],
        sample="50/class",
        classes="5-9",
    )
    print(ranking.verdict)
"""

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
        Bases as ``extract --base`` takes them, each optionally with its own settings.
    sample : str or int
        ``"N/class"`` or ``N`` in all (:class:`rank.sample.SampleSize`).
    settings : mapping, optional
        Settings every candidate shares unless it gives its own.
    baselines : sequence of str
        Probed beside each candidate on the same images (module docstring).
    cv, seed : int
        Folds of the probe's cross-validation; seeds the sample, folds, tuning, random weights.
    cache_dir : str or Path, optional
        The sample caches' store (default :func:`features.store.default_cache_dir`).
    classes, limit, groups, batch_size, workers, store_dtype, runtime, progress
        As :class:`features.options.ExtractOptions`'s (the baselines run on Keras).
    out : str or Path, optional
        A report folder, with the winner's sample cache as ``features.h5``.
    echo : callable, optional
        Called with a line per step.

    Returns
    -------
    Ranking
    """
    started = time.perf_counter()
    listed = unique_candidates(
        c if isinstance(c, Candidate) else parse_candidate(c) for c in candidates
    )
    size = SampleSize.parse(sample)
    collection = as_source(source, ExtractOptions(classes=classes, limit=limit, groups=groups))
    run = _Run(
        collection,
        size,
        sample_source(collection, size, seed),
        CacheStore(cache_dir or default_cache_dir()),
        baselines,
        {
            "batch_size": batch_size,
            "workers": workers,
            "store_dtype": store_dtype,
            "progress": progress,
            "runtime": runtime,
        },
        seed,
        echo or (lambda line: None),
    )
    shared = dict(settings or {})
    entries = [run.extract(candidate.build(shared, seed), candidate) for candidate in listed]
    ranked = rank_results(run.score(entries, cv))
    ranking = run.ranking(entries, ranked, shared, _full_cache(out), started)
    if out is not None:
        seed_cache(ranking.best.cache, _full_cache(out))
        write_report(ranking, out)
    return ranking


def _full_cache(out: str | Path | None) -> str:
    """Where the winner's full cache goes: in the report folder ``out``, or here."""
    return str(Path(out) / FULL_CACHE) if out is not None else FULL_CACHE


@dataclass
class _Extracted:
    """One candidate's sample extraction: its base, its cache, its baselines' caches."""

    candidate: Candidate
    base: Any
    result: ExtractResult
    baselines: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class _Run:
    """One ranking: the collection, its sample (``size``, drawn with ``seed``), the store and
    the extraction options of the sample caches, the baselines and the echo."""

    collection: Source
    size: SampleSize
    drawn: Source
    store: CacheStore
    baselines: Sequence[str]
    extracting: dict[str, Any]
    seed: int
    say: Callable[[str], Any]

    def extract(self, base: Any, candidate: Candidate) -> _Extracted:
        """Extract the sample with ``base`` and its baselines into the store (baselines on
        Keras: the random-weights version on the base's own model, its weights swapped, so
        its compiled call is reused; raw pixels of one size once for every candidate)."""
        store, drawn = self.store, self.drawn
        entry = _Extracted(candidate, base, store_extract(store, drawn, base, **self.extracting))
        self.say(
            f"{'reused   ' if entry.result.up_to_date else 'extracted'} {candidate.label}: "
            f"{entry.result.rows} sample rows  {entry.result.path.name}"
        )
        wanted = list(self.baselines)
        on_keras = {**self.extracting, "runtime": "keras"}
        if "random-base" in wanted:
            wanted.remove("random-base")
            if base.description.get("weights") == "none":
                entry.notes.append("its weights are random already: no random-base baseline")
            else:
                with randomized_in_place(base, self.seed) as random:
                    entry.baselines["random-base"] = store_extract(
                        store, drawn, random, **on_keras
                    ).path
        for name, baseline in baseline_bases(base, wanted).items():
            entry.baselines[name] = store_extract(store, drawn, baseline, **on_keras).path
        return entry

    def score(self, entries: list[_Extracted], cv: int) -> list[BaseResult]:
        """Each candidate's scores on its sample cache, beside its baselines on the same folds
        (each cache read once, each baseline cache probed once)."""
        loaded = _load_same_rows(entries)
        ids = loaded[entries[0].result.path].ids
        linked = shared_groups(list(loaded.values()), _declared(self.drawn, ids))
        probed: dict[str, np.ndarray] = {}
        results = []
        for entry in entries:
            data = loaded[entry.result.path]
            self.say(f"probing   {entry.candidate.label}")
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
                        seed=self.seed,
                        probed=probed,
                    ),
                    cost=_cost(
                        entry.result.path,
                        entry.result,
                        entry.base,
                        len(self.collection),
                        self.extracting["store_dtype"],
                    ),
                    notes=entry.notes,
                )
            )
        return results

    def ranking(
        self,
        entries: list[_Extracted],
        ranked: list[BaseResult],
        shared: dict[str, Any],
        full: str,
        started: float,
    ) -> Ranking:
        """The ranking of the scored candidates, with the command that completes the
        winner's sample cache ``full`` (the shared settings, its own, the runtime)."""
        winner = next(e for e in entries if e.candidate.label == ranked[0].label)
        spec = self.collection.options.get("spec") or self.collection.root
        chosen = {"base": winner.candidate.base, **shared, **winner.candidate.settings}
        runtime = self.extracting["runtime"]
        if runtime != "keras":
            chosen["runtime"] = runtime
        return Ranking(
            source=spec,
            sample={
                "size": str(self.size),
                "seed": self.seed,
                "images": entries[0].result.rows,
                "collection_images": len(self.collection),
            },
            results=ranked,
            verdict=verdict_text(ranked),
            command=extract_command(spec, self.collection.options, chosen, full),
            estimate_agreement=estimate_agreement(ranked),
            seconds=time.perf_counter() - started,
            chosen=winner.candidate,
            chosen_base=winner.base,
        )


def _load_same_rows(entries: list[_Extracted]) -> dict[Path, LabeledData]:
    """Every sample cache of the candidates and their baselines, each read once; refused
    unless all hold the same images."""
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
    return loaded
