"""``bottleneck run SPEC``: extract (reusing every cache it can) → compare → export → predict.

Stage 1 plans one extraction per (split, base) and keys each cache by its fingerprint in a
:class:`~bottleneck.store.CacheStore`, so a second run, or another spec with the same base
and data, extracts nothing. Stage 2 reads only caches. Each run writes a record folder with
the resolved spec, the comparison report, the exported model, predictions and ``run.json``.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bottleneck.bases import Base, load_base
from bottleneck.extract import cache_identity, extract, software_versions
from bottleneck.fingerprint import fingerprint
from bottleneck.sources import Source, open_source
from bottleneck.spec import load_spec
from bottleneck.store import CacheStore, default_cache_dir

_PIXELS_MAX_SIZE = 32


@dataclass
class Extraction:
    """One planned extraction: which split, through which base, into which cache."""

    role: str
    split: str
    source: Source
    base: Base
    cache: Path

    @property
    def cached(self) -> bool:
        return self.cache.exists()


def _bases(spec: dict) -> dict[str, Base]:
    """The base, plus the baselines' bases (same architecture random; raw pixels)."""
    options = {k: v for k, v in spec["base"].items() if k != "name" and v is not None}
    main = load_base(spec["base"]["name"], **options)
    bases = {"main": main}
    baselines = spec["baselines"]["use"] or []
    if "random-base" in baselines:
        bases["random-base"] = load_base(spec["base"]["name"], **{**options, "weights": "none"})
    if "raw-pixels" in baselines:
        size = tuple(min(s, _PIXELS_MAX_SIZE) for s in main.image_size)
        bases["raw-pixels"] = load_base("pixels", image_size=size, channels=main.channels)
    return bases


def plan(spec: dict, store: CacheStore) -> list[Extraction]:
    """Every extraction the spec needs, each keyed into ``store`` by its fingerprint."""
    data = spec["data"]
    splits = {"train": data["limit"], "test": data["test_limit"], "val": data["test_limit"]}
    sources = {
        split: open_source(data[split], classes=data["classes"], limit=limit)
        for split, limit in splits.items()
        if data[split] is not None
    }
    planned = []
    for role, base in _bases(spec).items():
        for split, source in sources.items():
            if role != "main" and split == "val":
                continue
            identity = cache_identity(base, source, source.manifest())
            planned.append(
                Extraction(role, split, source, base, store.path_for(fingerprint(identity)))
            )
    return planned


def describe_plan(planned: list[Extraction]) -> list[dict]:
    """What would run: one entry per extraction, with whether its cache already exists."""
    return [
        {
            "role": p.role,
            "split": p.split,
            "base": p.base.name,
            "source": p.source.options.get("spec"),
            "items": len(p.source),
            "cache": str(p.cache),
            "cached": p.cached,
        }
        for p in planned
    ]


def run_pipeline(
    spec_path: str | Path,
    *,
    cache_dir: str | Path | None = None,
    dry_run: bool = False,
    progress: bool | None = None,
    echo: Callable[[str], Any] = print,
) -> dict:
    """Run a pipeline spec end to end (or, with ``dry_run``, only say what would run).

    Returns the run record (also written as ``run.json`` in the run folder).
    """
    started = time.perf_counter()
    spec = load_spec(spec_path)
    store = CacheStore(cache_dir or spec["outputs"]["cache_dir"] or default_cache_dir(spec_path))
    planned = plan(spec, store)
    steps = describe_plan(planned)
    if dry_run:
        for step in steps:
            state = "cached" if step["cached"] else "extract"
            echo(
                f"{state:<8} {step['role']:<12} {step['split']:<6} {step['items']:>7} images "
                f"-> {step['cache']}"
            )
        return {"dry_run": True, "extractions": steps}
    extract_options = spec["extract"]
    timings: dict[str, float] = {}
    for p in planned:
        t0 = time.perf_counter()
        result = extract(
            p.source,
            p.base,
            p.cache,
            batch_size=extract_options["batch_size"],
            strict=extract_options["strict"],
            workers=extract_options["workers"],
            progress=progress,
        )
        store.touch(p.cache)
        verb = "reused" if result.up_to_date else "extracted"
        echo(
            f"{verb} {p.role} {p.split}: {result.rows} rows -> {p.cache.name}"
            + (f" ({len(result.failed)} skipped)" if result.failed else "")
        )
        for step in steps:
            if step["cache"] == str(p.cache):
                step["cached"] = result.up_to_date
                step["fingerprint"] = result.fingerprint
        timings[f"extract.{p.role}.{p.split}"] = round(time.perf_counter() - t0, 3)
    record = {
        "spec": str(Path(spec_path).resolve()),
        "resolved_spec": spec,
        "extractions": steps,
        "timings": timings,
        "software": software_versions(),
        "started_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    record["timings"]["total"] = round(time.perf_counter() - started, 3)
    return record


def write_record(record: dict, run_dir: Path) -> Path:
    """Write ``run.json`` into ``run_dir``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "run.json"
    path.write_text(json.dumps(record, indent=2, default=str))
    return path
