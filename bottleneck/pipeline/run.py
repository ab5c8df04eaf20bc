"""``bottleneck run SPEC``: extract (reusing every cache it can) → compare → export → predict.

Stage 1 plans one extraction per (split, base) and keys each cache by its fingerprint in a
:class:`~bottleneck.store.CacheStore`, so a second run, or another spec with the same base
and data, extracts nothing. Stage 2 reads only caches; its fits and their predictions are
memoized in the store's ``fits/`` folder (:class:`~bottleneck_transfer.heads.memo.FitMemo`),
so a second run refits nothing and exports the very fit its comparison scored. Each run
writes a record folder with the resolved spec, the comparison report, the exported model,
predictions and ``run.json`` (which head, with which parameters, was exported). A spec with
a binary, multi-label or regression ``[data] target`` goes on from its caches in
:mod:`.targets`.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bottleneck_transfer.atomic import (
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    make_folder,
)
from bottleneck_transfer.deploy.export import export
from bottleneck_transfer.deploy.predict import predict
from bottleneck_transfer.entries import MANIFEST_NAME, reusable
from bottleneck_transfer.errors import SmallDataWarning
from bottleneck_transfer.features.baselines import TFIDF, baseline_bases
from bottleneck_transfer.features.bases import Base, load_base
from bottleneck_transfer.features.bases.hub import spelled_path
from bottleneck_transfer.features.cache.partial import writer_lock
from bottleneck_transfer.features.cache.reader import target_kind_of
from bottleneck_transfer.features.extract import extract
from bottleneck_transfer.features.loop import cache_identity
from bottleneck_transfer.features.sources import Source, Split, open_source, split_source
from bottleneck_transfer.features.store import (
    EXPORT_MODELS,
    EXPORT_SUMMARY,
    EXPORTS_FOLDER,
    CacheStore,
    default_cache_dir,
)
from bottleneck_transfer.features.text_baseline import tfidf_caches
from bottleneck_transfer.features.views import Views
from bottleneck_transfer.fingerprint import fingerprint
from bottleneck_transfer.heads.compare import Comparison, compare_heads, held_out_text
from bottleneck_transfer.heads.learning_curve import (
    LearningCurve,
    format_curve,
    learning_curve,
)
from bottleneck_transfer.heads.memo import FitMemo
from bottleneck_transfer.heads.registry import head_kind
from bottleneck_transfer.heads.report import format_table, write_report
from bottleneck_transfer.heads.training import Fit, LabeledData, fit_head, train_head
from bottleneck_transfer.pipeline.spec import load_spec
from bottleneck_transfer.pipeline.targets import run_targets
from bottleneck_transfer.rank.ranking import rank_bases
from bottleneck_transfer.rank.sample import seed_cache
from bottleneck_transfer.rank.verdict import Ranking
from bottleneck_transfer.rank.verdict import format_text as format_ranking
from bottleneck_transfer.rank.verdict import write_report as write_rank_report
from bottleneck_transfer.versions import software_versions

_SUMMARY_HEADS = ("Winner", "Exported", "Predictions")


@dataclass
class Extraction:
    """One planned extraction: which split, through which base, into which cache."""

    role: str
    split: str
    source: Source
    base: Base
    cache: Path
    views: Views | None = None
    #: Complete an existing cache (a ranking's sample) instead of extracting afresh.
    update: bool = False

    @property
    def cached(self) -> bool:
        return self.cache.exists()


def _bases(spec: dict, main: Base | None = None) -> dict[str, Base]:
    """The base (``main`` when it is built already: a ranking's winner), plus the baselines'
    bases (same architecture random; raw pixels)."""
    if main is None:
        options = {k: v for k, v in spec["base"].items() if k != "name" and v is not None}
        main = load_base(spec["base"]["name"], seed=spec["extract"]["seed"], **options)
    return {"main": main, **baseline_bases(main, spec["baselines"]["use"] or [])}


def _sources(spec: dict) -> dict[str, Source]:
    """The spec's sources by split (train, and test or val when given)."""
    data = spec["data"]
    splits = {"train": data["limit"], "test": data["test_limit"], "val": data["test_limit"]}
    sources = {
        split: open_source(
            data[split],
            classes=data["classes"],
            limit=limit,
            source_kind=data["source"],
            image_column=data["image_column"],
            label_column=data["label_column"],
            text_column=data["text_column"],
            target=data["target"],
        )
        for split, limit in splits.items()
        if data[split] is not None
    }
    if data["val_split"] is not None:  # the test set is a stratified share of train
        whole = sources["train"]
        for split, part in (("train", "train"), ("test", "val")):
            sources[split] = split_source(whole, Split(data["val_split"], part))
    return sources


def plan(spec: dict, store: CacheStore, main: Base | None = None) -> list[Extraction]:
    """Every extraction the spec needs, each keyed into ``store`` by its fingerprint
    (``main``: the spec's base, when it is built already)."""
    sources = _sources(spec)
    options = spec["extract"]
    augmenting = Views.make(options["augment"], options["views"], options["seed"])
    planned = []
    for role, base in _bases(spec, main).items():
        for split, source in sources.items():
            if role != "main" and split == "val":
                continue
            views = augmenting if split == "train" else None  # test rows are never augmented
            identity = cache_identity(
                base,
                source,
                source.manifest(),
                options["store_dtype"],
                None if views is None else views.identity(),
            )
            cache = store.path_for(fingerprint(identity))
            planned.append(Extraction(role, split, source, base, cache, views))
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

    Examples
    --------
    >>> record = run_pipeline("pipelines/fashion_mnist.toml")
    >>> record["export"]["spec"]  # the head the comparison chose, with its parameters
    'logreg'
    >>> plan = run_pipeline("pipelines/fashion_mnist.toml", dry_run=True)  # what would run
    """
    started = time.perf_counter()
    spec = load_spec(spec_path)
    store = CacheStore(cache_dir or spec["outputs"]["cache_dir"] or default_cache_dir(spec_path))
    for line in outside_lines(spec, spec_path):
        echo(line)
    if spec["rank"]["candidates"] and dry_run:
        echo(
            f"rank     {len(spec['rank']['candidates'])} candidates on a sample of train; "
            "the winner's extractions follow"
        )
        return {"dry_run": True, "rank": spec["rank"]}
    ranking = _rank(spec, store, progress, echo) if spec["rank"]["candidates"] else None
    planned = plan(spec, store, ranking.chosen_base if ranking is not None else None)
    if ranking is not None:
        _start_from_sample(planned, ranking.best.cache, store)
    steps = describe_plan(planned)
    if dry_run:
        for step in steps:
            state = "cached" if step["cached"] else "extract"
            echo(
                f"{state:<8} {step['role']:<12} {step['split']:<6} {step['items']:>7} items "
                f"-> {step['cache']}"
            )
        return {"dry_run": True, "extractions": steps}
    timings: dict[str, float] = {}
    options = {**spec["extract"], "base": spec["base"]}
    caches = _run_extractions(planned, options, store, steps, timings, progress, echo)
    run_dir = new_run_dir(Path(spec["outputs"]["dir"]), Path(spec_path).stem)
    atomic_write_bytes(run_dir / "spec.toml", Path(spec_path).read_bytes())
    atomic_write_text(run_dir / "spec.resolved.json", json.dumps(spec, indent=2))
    record: dict[str, Any] = {
        "spec": str(Path(spec_path).resolve()),
        "run_dir": str(run_dir),
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "extractions": steps,
        "software": software_versions(),
    }
    if ranking is not None:
        write_rank_report(ranking, run_dir / "rank")
        record["rank"] = ranking.to_dict()
    memo = FitMemo.of_store(store)
    if target_kind_of(caches[("main", "train")]) == "class":
        record["summary"] = _run_classes(spec, caches, memo, run_dir, store, record, timings, echo)
    else:  # a binary, multi-label or regression target ([data] target)
        record["summary"] = run_targets(spec, caches, run_dir, record, timings, echo)
    timings["total"] = round(time.perf_counter() - started, 3)
    record["timings"] = timings
    write_record(record, run_dir)
    echo("\n".join(shown_summary(record)))
    return record


def _run_classes(
    spec: dict,
    caches: dict[tuple[str, str], Path],
    memo: FitMemo,
    run_dir: Path,
    store: CacheStore,
    record: dict,
    timings: dict[str, float],
    echo: Callable[[str], Any],
) -> list[str]:
    """Compare the heads on the class caches, (a learning curve), the report, export and
    predict; the run's summary lines."""
    t0 = time.perf_counter()
    comparison = _compare(spec, caches, memo)
    timings["compare"] = round(time.perf_counter() - t0, 3)
    echo(format_table(comparison))
    record["compare"] = {
        "winner": comparison.winner,
        "metric": comparison.metric,
        "selection": comparison.to_dict()["selection"],
        "verdict": comparison.verdict,
        "transfer": comparison.transfer,
        "rows": [
            {"name": r.name, "spec": r.spec, **{k: r.metrics.get(k) for k in ("accuracy",)}}
            for r in comparison.rows
        ],
    }
    curve = None
    if spec["heads"]["learning_curve"]:
        t0 = time.perf_counter()
        curve = _learning_curve(spec, caches, comparison, memo)
        timings["learning_curve"] = round(time.perf_counter() - t0, 3)
        echo("\n" + format_curve(curve))
        record["learning_curve"] = curve.to_dict()
    write_report(comparison, run_dir / "report", curve=curve)
    _deliver(spec, caches, comparison, memo, run_dir, store, record, timings)
    return _summary(comparison, record)


def _deliver(
    spec: dict,
    caches: dict[tuple[str, str], Path],
    comparison: Comparison,
    memo: FitMemo,
    run_dir: Path,
    store: CacheStore,
    record: dict,
    timings: dict[str, float],
) -> None:
    """Export the chosen head and predict test images (texts) with the export (into
    ``record``)."""
    t0 = time.perf_counter()
    data, fit = _chosen_fit(spec, caches[("main", "train")], comparison, memo)
    record["export"] = _export(spec, data, fit, comparison, run_dir, store, memo)
    timings["export"] = round(time.perf_counter() - t0, 3)
    if spec["export"]["predict"] and spec["data"]["test"]:
        t0 = time.perf_counter()
        predicted = predict(
            record["export"]["path"],
            spec["data"]["test"],
            out=run_dir / "predictions.csv",
            classes=spec["data"]["classes"],
            limit=spec["export"]["predict"],
            progress=False,
        )
        timings["predict"] = round(time.perf_counter() - t0, 3)
        record["predict"] = {
            "path": str(run_dir / "predictions.csv"),
            "images": len(predicted),
            "unit": predicted.unit,
            "accuracy": predicted.accuracy,
        }


def shown_summary(record: dict[str, Any]) -> list[str]:
    """The summary lines a run prints after its tables (the table above them already printed
    the verdict and the transfer sentence)."""
    shown = [line for line in record["summary"] if line.split(":", 1)[0] in _SUMMARY_HEADS]
    return [*shown, f"Run record: {Path(record['run_dir']) / 'run.json'}"]


def _rank(
    spec: dict, store: CacheStore, progress: bool | None, echo: Callable[[str], Any]
) -> Ranking:
    """Rank the spec's candidates on a sample of its train source; the winner becomes
    ``spec["base"]`` (its name and settings over the shared ones)."""
    shared = {k: v for k, v in spec["base"].items() if k != "name"}
    ranking = rank_bases(
        _sources(spec)["train"],
        spec["rank"]["candidates"],
        sample=spec["rank"]["sample"],
        settings=shared,
        baselines=spec["rank"]["baselines"],
        cv=spec["rank"]["cv"],
        seed=spec["extract"]["seed"],
        cache_dir=store.root,
        batch_size=spec["extract"]["batch_size"],
        workers=spec["extract"]["workers"],
        store_dtype=spec["extract"]["store_dtype"],
        runtime=spec["extract"]["runtime"],
        progress=progress,
        echo=echo,
    )
    echo(format_ranking(ranking))
    winner = ranking.chosen
    spec["base"] = {**shared, **winner.settings, "name": winner.base}
    return ranking


def _start_from_sample(planned: list[Extraction], sample_cache: Path, store: CacheStore) -> None:
    """Let the main train extraction start from the winner's sample cache (its rows are
    reused by the update path) when it is not in the store yet and has no augmented views
    (a sample cache has none)."""
    for p in planned:
        if p.role == "main" and p.split == "train" and p.views is None and not p.cache.exists():
            seed_cache(sample_cache, p.cache)
            store.seal(p.cache)
            p.update = True


def _engine_arguments(p: Extraction, options: dict) -> dict[str, Any]:
    """Where an extraction runs: the main base on the spec's Dask cluster, by name (each
    worker builds it), when ``[extract] engine = "dask"``; everything else here."""
    if options["engine"] != "dask" or p.role != "main":
        return {"base": p.base, "workers": options["workers"]}
    named = {k: v for k, v in options["base"].items() if v is not None}
    name = named.pop("name")
    return {
        **named,
        "base": name,
        "engine": "dask",
        "scheduler": options["scheduler"],
        "workers": options["workers"],
        "shard_images": options["shard_images"],
    }


def _run_extractions(
    planned: list[Extraction],
    options: dict,
    store: CacheStore,
    steps: list[dict],
    timings: dict[str, float],
    progress: bool | None,
    echo: Callable[[str], Any],
) -> dict[tuple[str, str], Path]:
    """Extract (or reuse) every planned cache; returns ``(role, split) -> cache path``."""
    caches = {}
    for p, step in zip(planned, steps, strict=True):
        t0 = time.perf_counter()
        intact = store.reusable(p.cache)  # else one StoreEntryWarning: extracted again
        result = extract(
            p.source,
            out=p.cache,
            force=p.cache.exists() and not intact,
            batch_size=options["batch_size"],
            strict=options["strict"],
            store_dtype=options["store_dtype"],
            compression=options["compression"],
            # seed: random weights (a base by name, on Dask) and the views
            **{"seed": options["seed"], **({} if p.views is None else p.views.options())},
            progress=progress,
            update=p.update,
            # the spec's runtime runs the main base; baselines stay on Keras (no conversion)
            runtime=options["runtime"] if p.role == "main" else "keras",
            **_engine_arguments(p, options),
            wait=echo,  # a second run of the spec waits for the first one's extraction
        )
        if not (intact and result.up_to_date):
            store.seal(p.cache)
        store.touch(p.cache)
        verb = "reused   " if result.up_to_date else "extracted"
        skipped = f" ({len(result.failed)} skipped)" if result.failed else ""
        echo(f"{verb} {p.role:<12} {p.split:<5} {result.rows:>7} rows  {p.cache.name}{skipped}")
        step.update(cached=result.up_to_date, fingerprint=result.fingerprint, rows=result.rows)
        timings[f"extract.{p.role}.{p.split}"] = round(time.perf_counter() - t0, 3)
        caches[(p.role, p.split)] = p.cache
    return caches


def _inputs(spec: dict, caches: dict[tuple[str, str], Path]) -> tuple[Path, Path | None, dict]:
    """The train cache, the test cache (None in cross-validation) and the baselines."""
    holdout = ("main", "test") in caches and spec["heads"]["cv"] is None
    baselines = {
        role: (path, caches.get((role, "test")) if holdout else None)
        for (role, split), path in caches.items()
        if role != "main" and split == "train"
    }
    train, test = caches[("main", "train")], caches[("main", "test")] if holdout else None
    if TFIDF in (spec["baselines"]["use"] or []):  # fitted on the train texts; beside train
        baselines[TFIDF] = tfidf_caches(train, test, CacheStore(train.parent))
    return train, test, baselines


def _compare(spec: dict, caches: dict[tuple[str, str], Path], memo: FitMemo) -> Comparison:
    train, test, baselines = _inputs(spec, caches)
    return compare_heads(
        train,
        test,
        heads=spec["heads"]["use"],
        cv=spec["heads"]["cv"],
        tune=spec["heads"]["tune"],
        baselines=baselines or None,
        memo=memo,
        metric=spec["heads"]["metric"],
    )


def _learning_curve(
    spec: dict, caches: dict[tuple[str, str], Path], comparison: Comparison, memo: FitMemo
) -> LearningCurve:
    """The spec's learning curve; its 'all' point is the comparison just run (holdout), its
    subsets' fits go through the memo (a second run refits nothing)."""
    train, test, baselines = _inputs(spec, caches)
    return learning_curve(
        train,
        test,
        sizes=spec["heads"]["learning_curve"],
        heads=spec["heads"]["use"],
        tune=spec["heads"]["tune"],
        baselines=baselines or None,
        full=comparison if test is not None else None,
        memo=memo,
        metric=spec["heads"]["metric"],
    )


def _chosen_fit(
    spec: dict, train_cache: Path, comparison: Comparison, memo: FitMemo
) -> tuple[LabeledData, Fit]:
    """The head to export, fitted on the whole training cache as its comparison fitted it.

    ``best`` is the head the comparison chose on training rows (by its declared metric),
    else the row of the named kind (or spec). The fit goes through the memo with the
    comparison's spec, tuning and seed: on a holdout comparison it is the very fit the
    comparison scored, tuned parameters included.
    """
    choice = spec["export"]["head"]
    main_rows = [r for r in comparison.rows if not r.is_baseline]
    row = (
        comparison.best
        if choice == "best"
        else next(r for r in main_rows if choice in (r.spec, head_kind(r.spec).name))
    )
    data = LabeledData.from_cache(train_cache)
    fit = fit_head(
        row.spec,
        data,
        tune=comparison.tuned,
        random_state=comparison.random_state,
        memo=memo,
        metric=comparison.metric,
    )
    return data, fit


def _export(
    spec: dict,
    data: LabeledData,
    fit: Fit,
    comparison: Comparison,
    run_dir: Path,
    store: CacheStore,
    memo: FitMemo,
) -> dict[str, Any]:
    """Export ``fit`` into the run folder; returns what the run record says of it.

    The export (a ``.keras`` file for kinds with an exact Keras form, else a folder) is a
    function of the fit (whose key holds the training cache's fingerprint, hence its base)
    and the code's version, so it is kept in the store's ``exports/`` folder under the fit's
    key: a later run copies it (parity-checked when it was written) instead of rebuilding
    the base and checking it again.
    """
    name = EXPORT_MODELS[head_kind(fit.spec).export_form]
    stored = store.root / EXPORTS_FOLDER / fit.key.split(":", 1)[-1][:32]
    # ``cache prune`` removes an export only while holding its lock: no run copies from an
    # export being removed (and a run of the same fit waits, then reuses this one's export).
    with writer_lock(stored, wait=lambda _message: None):
        reused = reusable(stored, "export")  # its files as written, else rebuilt (a warning)
        if reused:
            store.touch(stored / EXPORT_SUMMARY)  # its last use (``cache prune --older-than``)
        else:
            with warnings.catch_warnings():  # the comparison already warned about the same data
                warnings.simplefilter("ignore", SmallDataWarning)
                trained = train_head(
                    data,
                    fit.spec,
                    tune=comparison.tuned,
                    random_state=comparison.random_state,
                    memo=memo,
                )
            named = spec["base"]["name"]
            base = named if spelled_path(named) is not None else None  # a model file's path
            with atomic_path(stored) as scratch:
                scratch.mkdir()
                result = export(data.space.source, scratch / name, head=trained, base=base)
                summary = {
                    "head": result.head,
                    "kind": result.kind,
                    "parity": None if result.parity is None else result.parity.to_dict(),
                }
                (scratch / EXPORT_SUMMARY).write_text(json.dumps(summary), encoding="utf-8")
        for item in sorted(stored.iterdir()):
            if item.name not in (EXPORT_SUMMARY, MANIFEST_NAME):
                with atomic_path(run_dir / item.name) as target:
                    (shutil.copytree if item.is_dir() else shutil.copy2)(item, target)
        summary = json.loads((stored / EXPORT_SUMMARY).read_text(encoding="utf-8"))
    return {
        "path": str(run_dir / name),
        **summary,
        "spec": fit.spec,
        "params": fit.params,
        "tuned": None if fit.tuning is None else fit.tuning.best_params,
        "reused_fit": fit.reused,
        "reused_export": reused,
    }


def _summary(comparison: Comparison, record: dict) -> list[str]:
    chosen = comparison.selected
    scope = (
        f"{comparison.mode}, {len(comparison.eval_labels)} rows no choice saw; chosen by "
        f"validation {comparison.metric} on training rows; majority-class rate "
        f"{comparison.majority_rate:.3f}"
    )
    lines = [
        f"Winner: {chosen.name}  accuracy {held_out_text(chosen, 'accuracy')} ({scope})",
        comparison.verdict,
    ]
    if comparison.transfer:
        lines.append(comparison.transfer["sentence"])
    exported = record["export"]
    if "skipped" in exported:
        lines.append(f"Exported: nothing ({exported['skipped']})")
        return lines
    parity = exported["parity"]
    unit = record.get("predict", {}).get("unit", "images")
    relative = " (relative)" if parity and parity.get("relative") else ""
    checked = f", parity checked on {parity['n']} {unit}{relative}" if parity is not None else ""
    lines.append(f"Exported: {exported['path']}{checked}")
    if "predict" in record:
        p = record["predict"]
        acc = "" if p["accuracy"] is None else f", accuracy {p['accuracy']:.3f}"
        lines.append(f"Predictions: {p['path']} ({p['images']} {unit}{acc})")
    return lines


def new_run_dir(parent: Path, name: str) -> Path:
    """Create ``<parent>/<YYYYmmdd-HHMMSS>-<name>``, or ``...-<name>-2``, ``-3``... when runs
    start in the same second (``mkdir`` is atomic: two runs never share a folder)."""
    stem = dt.datetime.now().strftime("%Y%m%d-%H%M%S") + f"-{name}"
    make_folder(parent)
    count = 1
    while True:
        run_dir = parent / (stem if count == 1 else f"{stem}-{count}")
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            count += 1


def outside_lines(spec: dict, spec_path: str | Path) -> list[str]:
    """A line for each output folder of ``spec`` outside the spec's own folder (allowed)."""
    folder = Path(spec_path).resolve().parent
    outputs = {f"outputs.{key}": spec["outputs"][key] for key in ("dir", "cache_dir")}
    return [
        f"note: {key} is outside the spec's folder {folder}: {value}"
        for key, value in outputs.items()
        if value is not None and not Path(value).resolve().is_relative_to(folder)
    ]


def write_record(record: dict, run_dir: Path) -> Path:
    """Write ``run.json`` into ``run_dir`` (atomically)."""
    return atomic_write_text(run_dir / "run.json", json.dumps(record, indent=2, default=str))
