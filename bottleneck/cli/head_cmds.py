"""``bottleneck compare``, ``train`` and ``evaluate``: heads on cached features."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import click
from bottleneck_transfer.cli import options
from bottleneck_transfer.errors import BottleneckWarning, HeadError
from bottleneck_transfer.features.choices import BASELINES


@contextlib.contextmanager
def _warnings_in_output() -> Iterator[None]:
    """Silence this package's warnings: the commands print them in their output instead."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BottleneckWarning)
        yield


def _parse_baseline(value: str) -> tuple[str, str, str | None]:
    name, sep, paths = value.partition("=")
    train, _, test = paths.partition(",")
    if not sep or not name.strip() or not train.strip():
        raise click.BadParameter(
            f"expected NAME=TRAIN.h5 or NAME=TRAIN.h5,TEST.h5. Received: {value!r}",
            param_hint="--baseline-cache",
        )
    return name.strip(), train.strip(), test.strip() or None


@click.command()
@click.argument("train_cache", type=click.Path(dir_okay=False))
@click.option("--test", "test_cache", type=click.Path(dir_okay=False), help="Held-out cache.")
@click.option(
    "--cv",
    type=click.IntRange(min=2),
    help="Stratified K-fold cross-validation on TRAIN_CACHE (default: 5 without --test).",
)
@options.val_split()
@click.option(
    "--heads",
    help="Comma-separated specs of registered head kinds, with optional parameters, e.g. "
    "logreg:C=0.1,dense:hidden=256,dropout=0.2 (an unknown name lists the kinds). "
    "[default: the registry's default heads]",
)
@options.tune("Tune each head on a validation split of TRAIN only.")
@options.metric("tuning, the winner, the baseline and the verdict")
@click.option(
    "--cost-ratio",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Binary and multi-label targets: choose thresholds (on training rows) that minimise "
    "false positives + RATIO x false negatives instead of maximising F1.",
)
@options.calibrate()
@options.out(
    "the report folder: report.html (one page to read and share, opens offline), report.md,"
    " report.json, the figures.",
    file_okay=False,
    dir_okay=True,
)
@click.option(
    "--report",
    type=click.Path(file_okay=False),
    deprecated="Use -o/--out.",
    help="The report folder (old name of -o/--out).",
)
@click.option(
    "--baseline-cache",
    "baseline_caches",
    multiple=True,
    metavar="NAME=TRAIN[,TEST]",
    help="Baseline features of the same images or texts (e.g. raw-pixels=px-train.h5,px-test.h5) "
    "to measure the transfer gain. Repeatable.",
)
@click.option(
    "--baseline",
    "baseline_names",
    multiple=True,
    type=click.Choice(BASELINES),
    help="Extract (or reuse) this baseline for the same images through the normal path: "
    "the same architecture with random weights, or raw pixels (images), or TF-IDF of the "
    "train texts (text caches). Repeatable.",
)
@click.option(
    "--base",
    "base_path",
    type=click.Path(),
    help="The base model file (or preset folder), for --baseline random-base on caches made "
    "from a file or folder not beside them.",
)
@options.cache_dir("Where --baseline caches go (default: beside TRAIN_CACHE).")
@click.option(
    "--baseline-heads",
    type=click.Choice(["winner", "all"]),
    default="winner",
    show_default=True,
    help="Run the winning head on each baseline, or every head (slower).",
)
@click.option(
    "--learning-curve",
    "curve_sizes",
    metavar="SIZES",
    help="Instead of one comparison, a learning curve: labels per class, e.g. 5,10,50,200,all. "
    "Each size fits every head and baseline on seeded stratified subsets of TRAIN and "
    "scores them on --test (or a held-out quarter of TRAIN).",
)
@click.option(
    "--repeats",
    type=click.IntRange(min=1),
    help="Subsets per learning-curve size (default: ceil(200 / size), between 3 and 10).",
)
@click.option(
    "--layer-sweep",
    "layer_caches",
    multiple=True,
    metavar="TRAIN[,TEST]",
    help="Another layer's cache of the same images and base (with its test cache with "
    "--test): compare heads on every layer, say which transfers best. Repeatable.",
)
@options.bootstrap()
@options.seed("folds, heads, bootstrap.")
@options.jobs(
    "Cores for the fits: folds and heads over worker processes on large caches (the same "
    "results as one after another), else tuning trials; -1 uses every core."
)
@options.fit_engine()
@options.memory_budget()
@options.assert_min_accuracy(
    "Exit non-zero when the chosen head's accuracy on rows no choice saw is below this."
)
@options.json_flag()
@options.quiet("by default a bar on a terminal (heads x folds, time left).")
def compare(
    train_cache: str,
    test_cache: str | None,
    cv: int | None,
    val_split: float | None,
    heads: str,
    tune: bool,
    metric: str | None,
    cost_ratio: float | None,
    calibrate: bool,
    out: str | None,
    report: str | None,
    baseline_caches: tuple[str, ...],
    baseline_names: tuple[str, ...],
    base_path: str | None,
    cache_dir: str | None,
    baseline_heads: str,
    curve_sizes: str | None,
    repeats: int | None,
    layer_caches: tuple[str, ...],
    bootstrap: int,
    seed: int,
    jobs: int,
    memory_budget: str | None,
    out_of_core: bool,
    assert_min_accuracy: float | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Compare heads on TRAIN_CACHE: same splits, intervals, significance, a winner.

    Scores on --test (95% intervals: Clopper–Pearson for accuracy, bootstrap for the rest)
    or with --cv K folds (mean, Nadeau–Bengio corrected 95% interval). The winner (and the
    baseline row it is set against) is chosen on a validation split of the training rows
    only, by --metric; its score is then reported on rows no choice saw. Every head is tested
    against the winner (exact McNemar; CV: corrected t-test), Holm-adjusted over the heads,
    and a sentence says whether the lead is real. Baselines show the transfer gain (a test
    family of its own), or say the base does not help, or name negative transfer.
    --learning-curve repeats this at several numbers of labels per class and says from
    which size the transfer is worth it; --layer-sweep compares the layers of one base.

    \b
    Examples:
      bottleneck compare caches/train.h5 --test caches/test.h5 \\
          --heads logreg,linear-svm,rbf-svm,dense
      bottleneck compare caches/train.h5 --cv 5 --tune -o reports/run1
      bottleneck compare caches/train.h5 --test caches/test.h5 --metric balanced-accuracy
      bottleneck compare caches/train.h5 --cv 5 --heads linear-svm,logreg --no-calibrate
      bottleneck compare caches/photos.h5 --val-split 0.2 -o reports/photos
      bottleneck compare caches/train.h5 --test caches/test.h5 --baseline random-base \\
          --baseline raw-pixels
      bottleneck compare caches/train.h5 --cv 5 --baseline-cache raw-pixels=caches/pixels.h5
      bottleneck compare caches/train.h5 --test caches/test.h5 \\
          --learning-curve 5,10,50,200,all --baseline random-base --baseline raw-pixels -o lc
      bottleneck compare caches/pool.h5 --test caches/pool-test.h5 \\
          --layer-sweep caches/conv.h5,caches/conv-test.h5
      bottleneck compare caches/huge.h5 --val-split 0.2 --heads logreg,dense \\
          --memory-budget 8G
      bottleneck compare caches/ages.h5 --cv 5 --heads ridge,kernel-ridge --metric mae

    A cache with a binary, multi-label or regression target (`extract --target`) compares
    the heads that fit it against the mean (or prevalence) predictor, thresholds chosen on
    training rows (by F1, or --cost-ratio); --test, --cv, --heads, --tune, --metric,
    --bootstrap, --seed, -o and --json apply.
    """
    from bottleneck_transfer.features.cache.reader import target_kind_of
    from bottleneck_transfer.heads.budget import describe
    from bottleneck_transfer.heads.compare import compare_heads
    from bottleneck_transfer.heads.registry import default_heads, split_specs
    from bottleneck_transfer.heads.report import format_table, write_report
    from bottleneck_transfer.heads.training import check_min_accuracy

    out = out or report
    if target_kind_of(train_cache) != "class":
        refused = {
            "--val-split": val_split,
            "--baseline-cache": baseline_caches,
            "--baseline": baseline_names,
            "--learning-curve": curve_sizes,
            "--layer-sweep": layer_caches,
            "--assert-min-accuracy": assert_min_accuracy,
        }
        _compare_targets(
            train_cache,
            test_cache,
            [k for k, v in refused.items() if v],
            heads=None if heads is None else split_specs(heads),
            cv=cv,
            tune=tune,
            metric=metric,
            cost_ratio=cost_ratio,
            n_bootstrap=bootstrap,
            random_state=seed,
            out=out,
            as_json=as_json,
            memory=(memory_budget, out_of_core),
        )
        return
    if cost_ratio is not None:
        raise HeadError("--cost-ratio chooses thresholds of binary and multi-label targets")
    specs = split_specs(heads) if heads is not None else list(default_heads())
    specs = options.calibrated_specs(specs, calibrate)
    if layer_caches:
        if curve_sizes or baseline_caches or baseline_names:
            raise HeadError(
                "--layer-sweep compares layers on their own: run --learning-curve or "
                "baselines in a separate compare"
            )
        _layer_sweep(
            (train_cache, test_cache),
            layer_caches,
            heads=specs,
            cv=cv,
            tune=tune,
            n_bootstrap=bootstrap,
            random_state=seed,
            n_jobs=jobs,
            metric=metric,
            out=out,
            as_json=as_json,
            minimum=assert_min_accuracy,
        )
        return
    if curve_sizes and cv is not None:
        raise HeadError(
            "--learning-curve scores on --test, or on a held-out quarter of TRAIN_CACHE "
            "without it; drop --cv"
        )
    baselines = {}
    for value in baseline_caches:
        name, train, test = _parse_baseline(value)
        if name in baselines:
            raise HeadError(f"baseline {name!r} is given twice")
        if test_cache is not None and test is None:
            raise HeadError(
                f"baseline {name!r} needs its test cache too with --test: "
                f"--baseline-cache {name}=TRAIN.h5,TEST.h5"
            )
        baselines[name] = (train, test if test_cache is not None else None)
    if baseline_names:
        from bottleneck_transfer.features.baselines import extract_baselines

        baselines.update(
            extract_baselines(
                train_cache,
                test_cache,
                [n for n in dict.fromkeys(baseline_names) if n not in baselines],
                cache_dir=cache_dir,
                base_path=base_path,
                progress=False if quiet else None,
            )
        )
    if curve_sizes:
        from bottleneck_transfer.heads.learning_curve import (
            CHOSEN,
            format_curve,
            learning_curve,
            write_curve_report,
        )

        with _warnings_in_output():
            curve = learning_curve(
                train_cache,
                test_cache,
                sizes=curve_sizes,
                heads=specs,
                baselines=baselines or None,
                baseline_heads=baseline_heads,
                repeats=repeats,
                tune=tune,
                n_bootstrap=bootstrap,
                random_state=seed,
                n_jobs=jobs,
                metric=metric,
            )
        _show(curve, format_curve(curve), write_curve_report, out, as_json)
        last = curve.point(CHOSEN, curve.sizes[-1])
        check_min_accuracy(
            last.mean,
            assert_min_accuracy,
            what=f"the head chosen on training rows at {last.size} labels per class",
        )
        return
    with _warnings_in_output():
        comparison = compare_heads(
            train_cache,
            test_cache,
            heads=specs,
            cv=cv,
            val_split=val_split,
            tune=tune,
            baselines=baselines,
            baseline_heads=baseline_heads,
            n_bootstrap=bootstrap,
            random_state=seed,
            n_jobs=jobs,
            progress=False if quiet else None,
            metric=metric,
            memory_budget=memory_budget,
            out_of_core=out_of_core,
        )
    text = f"{format_table(comparison)}\n{describe(comparison.memory)}"
    _show(comparison, text, write_report, out, as_json)
    check_min_accuracy(
        comparison.selected.metrics["accuracy"],
        assert_min_accuracy,
        what=f"{comparison.selected.name}, chosen on training rows (scored on rows no choice saw)",
    )


def _compare_targets(
    train: str,
    test: str | None,
    refused: list[str],
    *,
    out: str | None,
    as_json: bool,
    memory: tuple[str | None, bool],
    **settings: Any,
) -> None:
    """``compare`` on a binary, multi-label or regression cache (in memory: ``memory``'s
    budget and ``--out-of-core`` refuse what would stream)."""
    from bottleneck_transfer.features.cache.reader import target_kind_of
    from bottleneck_transfer.heads.target_compare import check_in_memory, compare_targets
    from bottleneck_transfer.heads.target_report import format_target_table, write_target_report

    if refused:
        raise HeadError(
            f"{', '.join(refused)} apply to class targets only; {train} has a "
            f"{target_kind_of(train)} target, compared against its own baseline (the mean or "
            "prevalence predictor) without learning curves, layer sweeps or accuracy floors"
        )
    check_in_memory(train, *memory)
    result = compare_targets(train, test, **settings)
    _show(result, format_target_table(result), write_target_report, out, as_json)


def _show(
    result: Any, text: str, write: Callable[[Any, str], dict], out: str | None, as_json: bool
) -> None:
    """Write the report folder (with -o) and print the result as text or JSON."""
    files = write(result, out) if out else {}
    if as_json:
        options.echo_json({**result.to_dict(), "files": {k: str(v) for k, v in files.items()}})
        return
    click.echo(text)
    if files:
        click.echo(f"\nReport written to {out}/ ({', '.join(files)})")


def _layer_sweep(
    first: tuple[str, str | None],
    values: tuple[str, ...],
    *,
    out: str | None,
    as_json: bool,
    minimum: float | None,
    **settings: Any,
) -> None:
    """``compare --layer-sweep``: TRAIN_CACHE (and --test) first, then each given layer."""
    from bottleneck_transfer.heads.layer_sweep import format_sweep, layer_sweep, write_sweep_report
    from bottleneck_transfer.heads.training import check_min_accuracy

    holdout = first[1] is not None
    caches = [first]
    for value in values:
        train, _, test = (part.strip() for part in value.partition(","))
        if not train or holdout != bool(test):
            raise click.BadParameter(
                "give TRAIN.h5,TEST.h5 for each layer with --test, and TRAIN.h5 alone "
                f"without it. Received: {value!r}",
                param_hint="--layer-sweep",
            )
        caches.append((train, test or None))
    with _warnings_in_output():
        sweep = layer_sweep(caches, **settings)
    _show(sweep, format_sweep(sweep), write_sweep_report, out, as_json)
    best = sweep.best.best.metrics["accuracy"]
    check_min_accuracy(
        best, minimum, what=f"the best layer {sweep.best.name} (on rows no choice saw)"
    )


@click.command()
@click.argument("cache", type=click.Path(dir_okay=False))
@click.option("--head", "spec", help="Head spec. [default: the registry's DEFAULT_HEAD, logreg]")
@options.out("the head, a .skops file.", required=True)
@options.force()
@options.tune("Tune on a validation split of CACHE first.")
@options.metric("--tune")
@options.calibrate()
@options.memory_budget()
@options.seed()
@options.jobs()
@options.json_flag("the head's metadata.")
def train(
    cache: str,
    spec: str,
    out: str,
    force: bool,
    tune: bool,
    metric: str | None,
    calibrate: bool,
    memory_budget: str | None,
    out_of_core: bool,
    seed: int,
    jobs: int,
    as_json: bool,
) -> None:
    """Fit one head on all of CACHE and save it (skops, with its provenance).

    A CACHE whose features exceed --memory-budget is streamed in chunks (every head kind
    but rbf-svm; knn is refused too, as its saved head would hold every row).

    \b
    Examples:
      bottleneck train caches/train.h5 --head logreg -o heads/logreg.skops
      bottleneck train caches/train.h5 --head dense:hidden=256,dropout=0.2 --tune -o heads/d.skops
      bottleneck train caches/huge.h5 --head linear-svm --out-of-core -o heads/svm.skops
      bottleneck train caches/huge.h5 --head dense --memory-budget 4G -o heads/dense.skops
      bottleneck train caches/train.h5 --head linear-svm --no-calibrate -o heads/svm.skops
    """
    from bottleneck_transfer.features.cache import FeatureCache
    from bottleneck_transfer.heads.budget import describe
    from bottleneck_transfer.heads.registry import DEFAULT_HEAD
    from bottleneck_transfer.heads.selection import resolve_metric
    from bottleneck_transfer.heads.training import refuse_value_target, save_head, train_head

    options.refuse_overwrite(out, force)
    with FeatureCache.open(cache) as opened, _warnings_in_output():
        refuse_value_target(opened)
        deciding, note = resolve_metric(
            metric, opened.labels, len(opened.class_names), [spec or DEFAULT_HEAD]
        )
        trained = train_head(
            cache,  # a path: train_head reads the features and may scale them in place
            options.calibrated_specs([spec or DEFAULT_HEAD], calibrate)[0],
            tune=tune,
            out_of_core=out_of_core,
            memory_budget=memory_budget,
            random_state=seed,
            n_jobs=jobs,
            metric=deciding.name,
        )
    path = save_head(trained, out)
    meta = trained.metadata
    if as_json:
        options.echo_json({**meta, "path": str(path)})
        return
    click.echo(
        f"Trained {meta['head']} on {meta['cache']['rows']} rows of {cache} in "
        f"{meta['fit_seconds']:.2f} s -> {path}"
    )
    click.echo(describe(meta["memory"]))
    if meta["tuning"]:
        tuning = meta["tuning"]
        chosen = ", ".join(f"{k}={v:g}" for k, v in tuning["best_params"].items())
        click.echo(
            f"Tuned {', '.join(tuning['searched'])}: {chosen} (selection score: the best "
            f"validation {tuning['metric']} of {tuning['n_trials']} trials, "
            f"{tuning['best_validation_score']:.4f}, on the rows that chose it, so optimistic; "
            "score the head on other images (texts) with `bottleneck evaluate`)"
        )
    for message in [*meta["warnings"], *([note] if note and tune else [])]:
        click.echo(f"Warning: {message}", err=True)


@click.command()
@click.argument("head_file", type=click.Path(dir_okay=False))
@click.argument("cache", type=click.Path(dir_okay=False))
@options.bootstrap()
@options.seed()
@options.memory_budget()
@options.assert_min_accuracy("Exit non-zero when the accuracy is below this.")
@options.json_flag("the scores.")
def evaluate(
    head_file: str,
    cache: str,
    bootstrap: int,
    seed: int,
    memory_budget: str | None,
    out_of_core: bool,
    assert_min_accuracy: float | None,
    as_json: bool,
) -> None:
    """Score a saved head on a labeled CACHE from the same base and classes.

    Prints accuracy (95% Clopper–Pearson interval), balanced accuracy, macro-F1 and
    log-loss (95% bootstrap intervals), then precision, recall and F1 per class.

    \b
    Example:
      bottleneck evaluate heads/logreg.skops caches/test.h5
    """
    from bottleneck_transfer.heads.budget import describe
    from bottleneck_transfer.heads.report import format_evaluation, per_class_scores
    from bottleneck_transfer.heads.training import check_min_accuracy, evaluate_head

    evaluation = evaluate_head(
        head_file,
        cache,
        n_bootstrap=bootstrap,
        random_state=seed,
        memory_budget=memory_budget,
        out_of_core=out_of_core,
    )
    if as_json:
        per_class = per_class_scores(evaluation.confusion, evaluation.class_names)
        options.echo_json({**evaluation.to_dict(), "per_class": per_class})
    else:
        click.echo(format_evaluation(evaluation))
        click.echo(describe(evaluation.memory))
    check_min_accuracy(
        evaluation.metrics["accuracy"], assert_min_accuracy, what=f"the head {head_file}"
    )


COMMANDS = [compare, train, evaluate]
