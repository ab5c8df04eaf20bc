"""``bottleneck compare``, ``train`` and ``evaluate``: heads on cached features."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click
from bottleneck_transfer.cli import options
from bottleneck_transfer.features.choices import BASELINES
from bottleneck_transfer.quiet import own_warnings_in_output

if TYPE_CHECKING:
    from bottleneck_transfer.heads.compare_modes import Compared


def _parse_baseline(value: str) -> tuple[str, str, str | None]:
    """A ``--baseline-cache`` value: ``NAME=TRAIN.h5`` or ``NAME=TRAIN.h5,TEST.h5``."""
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
    test_cache: str | None,
    baseline_caches: tuple[str, ...],
    layer_caches: tuple[str, ...],
    out: str | None,
    report: str | None,
    as_json: bool,
    quiet: bool,
    **given: Any,
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
    from bottleneck_transfer.heads.compare_modes import CompareRequest, run_compare

    request = CompareRequest(
        test_cache=test_cache,
        baseline_caches=tuple(_parse_baseline(value) for value in baseline_caches),
        layer_caches=tuple(_parse_layer(value, test_cache is not None) for value in layer_caches),
        progress=False if quiet else None,
        **given,
    )
    compared = run_compare(request)
    _show(compared, out or report, as_json)
    compared.check(request.assert_min_accuracy)


def _parse_layer(value: str, holdout: bool) -> tuple[str, str | None]:
    """A ``--layer-sweep`` value: ``TRAIN.h5,TEST.h5`` with ``--test`` (``holdout``), else
    ``TRAIN.h5``."""
    train, _, test = (part.strip() for part in value.partition(","))
    if not train or holdout != bool(test):
        raise click.BadParameter(
            "give TRAIN.h5,TEST.h5 for each layer with --test, and TRAIN.h5 alone "
            f"without it. Received: {value!r}",
            param_hint="--layer-sweep",
        )
    return train, test or None


def _show(compared: Compared, out: str | None, as_json: bool) -> None:
    """Write the report folder (with -o) and print the result as text or JSON."""
    files = compared.write(compared.result, out) if out else {}
    if as_json:
        result = compared.result.to_dict()
        options.echo_json({**result, "files": {k: str(v) for k, v in files.items()}})
        return
    click.echo(compared.text)
    if files:
        click.echo(f"\nReport written to {out}/ ({', '.join(files)})")


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
    with FeatureCache.open(cache) as opened, own_warnings_in_output():
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
