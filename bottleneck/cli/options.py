"""The options every command shares, declared once, and the one ``--json`` printer.

Each name below is a decorator (``@options.out("Cache file.")``) so that a flag means the
same thing, with the same spelling, type and destination, on every command: its help starts
with :data:`MEANING` and a command only adds what it applies to. ``-o/--out`` is where a
command writes, ``--json`` prints the command's result as JSON, ``--quiet`` hides progress
bars, ``--force`` replaces an existing output, ``--seed`` seeds every random choice,
``--metric`` is the one declared metric that decides.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from bottleneck_transfer.errors import BottleneckError
from bottleneck_transfer.features.choices import (
    BASELINES,
    COMPRESSIONS,
    COMPUTE_DTYPES,
    DASK_TIMEOUT,
    ENGINES,
    LAYOUTS,
    RUNTIME_CHOICES,
    STORE_DTYPES,
)

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]

#: What each shared option means wherever it appears: the start of its help on every command.
MEANING = {
    "--out": "Output:",
    "--force": "Replace an existing output",
    "--quiet": "No progress bar or progress messages",
    "--json": "Print the result as JSON",
    "--seed": "The random seed",
    "--metric": "The metric that decides",
}


def _help(option: str, detail: str | None) -> str:
    """The help of a shared ``option``: its :data:`MEANING`, then what it applies to here."""
    meaning = MEANING[option]
    if not detail:
        return f"{meaning}."
    return f"{meaning} {detail}" if meaning.endswith(":") else f"{meaning}: {detail}"


def _preprocess(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Check a ``--preprocess`` value early (named mode or ``mean=...,std=...``)."""
    from bottleneck_transfer.features.bases.preprocessing import check_preprocess

    if value is not None:
        try:
            check_preprocess(value)
        except BottleneckError as exc:
            raise click.BadParameter(str(exc), ctx, param) from exc
    return value


def echo_json(data: object) -> None:
    """Print a command's result as indented JSON on stdout: the one ``--json`` printer."""
    click.echo(json.dumps(data, indent=2, default=str))


def compose(*decorators: Decorator) -> Decorator:
    """One decorator applying ``decorators`` in the order they are listed (top to bottom)."""

    def apply(function: Callable[..., Any]) -> Callable[..., Any]:
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return apply


def out(
    help: str, *, required: bool = False, file_okay: bool = True, dir_okay: bool = False
) -> Decorator:
    """``-o/--out``: where the command writes (a file, or a folder with ``dir_okay``)."""
    return click.option(
        "-o",
        "--out",
        required=required,
        type=click.Path(file_okay=file_okay, dir_okay=dir_okay),
        help=_help("--out", help),
    )


def json_flag(detail: str | None = None) -> Decorator:
    """``--json``: print the command's result as JSON instead of text."""
    return click.option("--json", "as_json", is_flag=True, help=_help("--json", detail))


def quiet(detail: str | None = None) -> Decorator:
    """``--quiet``: no progress bars or progress messages."""
    return click.option("--quiet", is_flag=True, help=_help("--quiet", detail))


def force(detail: str | None = None) -> Decorator:
    """``--force``: replace what is at ``--out``."""
    return click.option("--force", is_flag=True, help=_help("--force", detail))


def dry_run(detail: str) -> Decorator:
    """``--dry-run``: say what the command would do; do none of it."""
    return click.option("--dry-run", is_flag=True, help=f"Say what would be {detail}.")


def refuse_overwrite(path: str | Path, force: bool) -> None:
    """Refuse to replace an existing ``--out`` unless ``--force`` (checked before any work)."""
    if not force and Path(path).exists():
        raise BottleneckError(f"{path} exists; pass --force to replace it, or choose another -o")


def trust_graph(what: str) -> Decorator:
    """``--trust-graph``: run a model graph holding ops off the allow-list (a graph is a
    program; see :mod:`bottleneck_transfer.graphs`)."""
    return click.option(
        "--trust-graph",
        is_flag=True,
        help=f"Run {what} even if its graph holds ops outside bottleneck's allow-list (file, "
        "network or Python ops, TFLite custom/Flex ops, non-standard ONNX domains); only for "
        "models from a source you trust. Recorded in the provenance.",
    )


def cache_dir(help: str) -> Decorator:
    """``--cache-dir``: the cache store folder."""
    return click.option("--cache-dir", type=click.Path(file_okay=False), help=help)


def seed(detail: str | None = None) -> Decorator:
    """``--seed``: the random seed."""
    return click.option(
        "--seed", type=int, default=0, show_default=True, help=_help("--seed", detail)
    )


def jobs(help: str = "Cores for tuning trials; -1 uses every core.") -> Decorator:
    """``--jobs``: how many cores the fits use (-1: all)."""
    return click.option("--jobs", type=int, default=-1, show_default=True, help=help)


def tune(help: str) -> Decorator:
    """``--tune``: search the head's grid on a validation split first."""
    return click.option("--tune", is_flag=True, help=help)


def calibrate() -> Decorator:
    """``--calibrate/--no-calibrate``: calibrate the heads the registry declares calibrated."""
    return click.option(
        "--calibrate/--no-calibrate",
        default=True,
        show_default=True,
        help="Calibrate heads without a probabilistic model (linear-svm, rbf-svm: temperature "
        "scaling on folds of the training rows). --no-calibrate keeps their softmax of "
        "decision values, named scores (score_* columns), not probabilities; the same as "
        "the spec key calibrate=false.",
    )


def bootstrap() -> Decorator:
    """``--bootstrap``: resamples for the bootstrap 95% intervals."""
    return click.option(
        "--bootstrap",
        type=click.IntRange(min=100),
        default=1000,
        show_default=True,
        help="Bootstrap resamples for the 95% intervals of balanced accuracy, macro-F1 and "
        "log-loss (accuracy's interval is exact).",
    )


def assert_min_accuracy(help: str) -> Decorator:
    """``--assert-min-accuracy``: exit non-zero below this accuracy."""
    return click.option("--assert-min-accuracy", type=click.FloatRange(0, 1), help=help)


class _MetricChoice(click.Choice):
    """Every declared metric of every target kind; the shell completes the class metrics
    (and, for ``compare``, the others too)."""

    def shell_complete(self, ctx: click.Context, param: click.Parameter, incomplete: str):
        from bottleneck_transfer.heads.declared import METRIC_NAMES

        offered = self.choices if ctx.command.name == "compare" else METRIC_NAMES
        return [
            click.shell_completion.CompletionItem(name)
            for name in offered
            if str(name).startswith(incomplete)
        ]


def metric(what: str) -> Decorator:
    """``--metric``: the one declared metric that decides ``what`` (tuning, choices, verdicts);
    class metrics, and those of binary, multi-label and regression targets."""
    from bottleneck_transfer.heads.declared import ALL_METRIC_NAMES, METRIC_NAMES, TOP_K

    return click.option(
        "--metric",
        type=_MetricChoice(ALL_METRIC_NAMES),
        default=None,
        help=f"{MEANING['--metric']} {what}: {', '.join(METRIC_NAMES)} (top-k: top-{TOP_K} "
        "accuracy; log-loss and top-k need heads with probabilities). Lower is better for "
        "log-loss, higher for the rest. [default: accuracy, or balanced-accuracy when "
        "classes are unequal] Binary targets: roc-auc (default), pr-auc, f1, accuracy; "
        "multi-label: map (default), micro-f1, macro-f1; regression: r2 (default), mae, rmse.",
    )


def memory_budget() -> Decorator:
    """``--memory-budget`` and ``--out-of-core``: above the budget heads stream the cache."""
    from bottleneck_transfer.heads.budget import DEFAULT_SHARE, IN_MEMORY_FACTOR

    return compose(
        click.option(
            "--memory-budget",
            metavar="SIZE",
            help=f"Memory the heads may use: 8G, 512M or 40%. When {IN_MEMORY_FACTOR:g} x "
            "the features (float32) exceed it, every head streams the cache in seeded "
            "chunks instead of reading it whole (rbf-svm cannot: use nystroem). "
            f"[default: {DEFAULT_SHARE:.0%} of the machine's memory]",
        ),
        click.option(
            "--out-of-core",
            is_flag=True,
            help="Stream the cache whatever its size (as above the memory budget).",
        ),
    )


def val_split() -> Decorator:
    """``--val-split``: hold out a stratified, seeded share of a single labelled source."""
    return click.option(
        "--val-split",
        type=click.FloatRange(0, 1, min_open=True, max_open=True),
        help="Hold out this share of the labelled images (texts), stratified by class and seeded "
        "with --seed (for one labelled folder).",
    )


def classes(help: str = "Class subset: names, indices or ranges (5-9).") -> Decorator:
    """``--classes``: a class subset of a labelled source."""
    return click.option("--classes", default=None, help=help)


def limit(help: str = "Use N images (texts) spread over the source.") -> Decorator:
    """``--limit``: use N items of the source."""
    return click.option("--limit", type=click.IntRange(min=1), help=help)


def groups(
    help: str = "A CSV manifest's column naming each image's group (patient, session): no "
    "group is ever on both sides of a split (--val-split, CV folds, tuning, learning curves).",
) -> Decorator:
    """``--groups``: a manifest column of user-declared groups, stored in the cache."""
    return click.option("--groups", default=None, metavar="COLUMN", help=help)


def target(
    help: str = "What a CSV/JSON-lines manifest labels each image with: class, binary, "
    "multilabel ('|'-separated tags) or regression (a number), optionally with "
    "':column=NAME,positive=VALUE,unit=TEXT,empty=true'. Default: inferred from the "
    "'label' column (tags or fractional numbers; else a class); `info` states it.",
) -> Decorator:
    """``--target``: a manifest's target kind and column (:mod:`features.targets`)."""
    return click.option("--target", default=None, metavar="KIND[:KEY=VALUE,...]", help=help)


def source_kind() -> Decorator:
    """``--source``, ``--image-column``, ``--label-column``, ``--text-column``: how to read
    SOURCE."""
    return compose(
        click.option(
            "--source",
            "source_kind",
            default=None,
            metavar="KIND",
            help="The source's kind instead of detecting it from the path: folder, csv, "
            "webdataset, table, npz, idx, fashion-mnist or text (CSV/JSON-lines/Parquet with a "
            "text column, or folders of .txt files by class).",
        ),
        click.option(
            "--image-column",
            default=None,
            metavar="COLUMN",
            help="A Parquet/Arrow table's column of image bytes (default: image).",
        ),
        click.option(
            "--label-column",
            default=None,
            metavar="COLUMN",
            help="A Parquet/Arrow table's or a text table's column of labels: class indices "
            "(a ClassLabel) or names (default: label).",
        ),
        click.option(
            "--text-column",
            default=None,
            metavar="COLUMN",
            help="A text table's (CSV, JSON-lines, Parquet) column of texts (default: text; "
            "naming it reads SOURCE as texts).",
        ),
    )


def batch_size(help: str, default: int | None = None) -> Decorator:
    """``--batch-size``: images (texts) per model call."""
    return click.option(
        "--batch-size",
        type=click.IntRange(min=1),
        default=default,
        show_default=default is not None,
        help=help,
    )


def workers() -> Decorator:
    """``--workers``: decoding threads (or Dask worker processes with ``--engine dask``)."""
    return click.option(
        "--workers",
        type=click.IntRange(min=1),
        help="Decoding threads (default: cores); with --engine dask and no --scheduler, the "
        "local cluster's worker processes.",
    )


def _engine_options() -> list[Decorator]:
    return [
        click.option(
            "--engine",
            type=click.Choice(tuple(ENGINES)),
            default="local",
            show_default=True,
            help="dask, ray: run the work as tasks on a Dask or Ray cluster (pip install "
            "'bottleneck-transfer[dask]' or '[ray]').",
        ),
        click.option(
            "--scheduler",
            "--address",
            "scheduler",
            metavar="ADDRESS",
            help="A running cluster to join: a Dask scheduler (tcp://host:8786) or a Ray "
            "cluster (host:6379, auto); default: a local cluster.",
        ),
        click.option(
            "--timeout",
            type=click.FloatRange(min=0, min_open=True),
            metavar="SECONDS",
            help="With --engine dask or ray: stop with one line after waiting this long to reach "
            "the scheduler, for a worker, or while no worker runs a shard (finished shards "
            f"are kept for a rerun)  [default: {DASK_TIMEOUT:g}]",
        ),
    ]


def engine() -> Decorator:
    """``--engine``, ``--scheduler``, ``--timeout`` and ``--shard-images``: where an
    extraction runs."""
    return compose(
        *_engine_options(),
        click.option(
            "--shard-images",
            type=click.IntRange(min=1),
            help="Images per shard with --engine dask (default 4096, whole batches).",
        ),
    )


def fit_engine() -> Decorator:
    """``--engine``, ``--scheduler``, ``--timeout``, ``--workers``: run the command's joblib
    fits on Dask.

    The command runs inside :func:`features.engines.joblib_engine`, so its tuning trials go
    to the cluster through joblib's Dask backend; the command itself never sees the options.
    """

    def decorate(command: Callable) -> Callable:
        @functools.wraps(command)
        def run(
            *args: Any,
            engine: str,
            scheduler: str | None,
            workers: int | None,
            timeout: float | None,
            **kw: Any,
        ):
            from bottleneck_transfer.features.engines import joblib_engine

            with joblib_engine(engine, scheduler, workers, timeout):
                return command(*args, **kw)

        workers = click.option(
            "--workers",
            type=click.IntRange(min=1),
            help="Worker processes of the local Dask cluster (--engine dask, no --scheduler).",
        )
        return compose(*_engine_options(), workers)(run)

    return decorate


def image_reading() -> Decorator:
    """``--workers``, ``--strict`` and ``--max-pixels``: how images are decoded."""
    return compose(
        workers(),
        click.option(
            "--strict", is_flag=True, help="Fail at the first bad image instead of skipping."
        ),
        click.option(
            "--max-pixels", type=click.IntRange(min=1), default=100_000_000, show_default=True
        ),
    )


def compute_dtype(help: str) -> Decorator:
    """``--compute-dtype``: the precision the base runs in."""
    return click.option("--compute-dtype", type=click.Choice(COMPUTE_DTYPES), help=help)


def runtime() -> Decorator:
    """``--runtime``: how the base's forward pass runs (:mod:`features.runners`)."""
    return click.option(
        "--runtime",
        type=click.Choice(RUNTIME_CHOICES),
        default=None,
        help="keras (the default; onnx for an .onnx base, which runs on nothing else); "
        "onnx: the base converted once to ONNX (kept in the store, refused unless its "
        "features equal Keras' to 1e-4) and run by ONNX Runtime; auto: the faster of the "
        "two for this base on this machine (probed once, kept in the store). The cache "
        "fingerprint is the same; the runtime is in the provenance.",
    )


def storage() -> Decorator:
    """``--store-dtype`` and ``--compression``: how a cache stores its features."""
    return compose(
        click.option(
            "--store-dtype",
            type=click.Choice(STORE_DTYPES),
            default="float32",
            show_default=True,
            help="Store features as float16 to halve the cache (part of its fingerprint); "
            "readers always give float32.",
        ),
        click.option(
            "--compression",
            type=click.Choice(COMPRESSIONS),
            default=None,
            help="Lossless HDF5 compression of the features (recorded in the provenance).",
        ),
    )


def base() -> Decorator:
    """``--base`` and what shapes it (:func:`base_settings`)."""
    return compose(
        click.option(
            "--base",
            required=True,
            help="keras.applications name (resnet50, mobilenet_v2, ...), a .keras/.h5 file, "
            "pixels, a KerasHub preset (keras-hub:NAME, hf://..., kaggle://..., a preset "
            "folder) or a SavedModel folder (with --preprocess). A path has a separator or an "
            "extension (./name, dir/name, name.keras); a bare word is always a registered "
            "name, never a file of that name in the working directory.",
        ),
        base_settings(),
    )


def base_settings() -> Decorator:
    """What shapes a base: weights, input size, pooling, layer, preprocessing."""
    return compose(
        click.option(
            "--weights", default=None, help="imagenet (default for names), none, or a file."
        ),
        click.option(
            "--image-size", type=click.IntRange(min=1), help="Input size (default: the base's)."
        ),
        click.option(
            "--pooling",
            type=click.Choice(["avg", "max", "token", "cls", "pooled", "mean", "last-token"]),
            default=None,
            help="Images (default avg): avg/max over a feature map's positions or a "
            "transformer's tokens (avg: the mean token); token: a transformer's class token "
            "(KerasHub bases). Text bases (default: the family's, shown by info): cls (first "
            "token), pooled (the backbone's pooled output), mean (over non-padding tokens), "
            "last-token (decoder-only models).",
        ),
        click.option(
            "--max-length",
            type=click.IntRange(min=2),
            default=None,
            help="Text bases: tokens per text; longer texts are truncated and counted "
            "(default: the preset's longest sequence, at most 512).",
        ),
        click.option(
            "--layer",
            "--output",
            "layer",
            default=None,
            help="Cut at this layer (default: penultimate); an .onnx base: take this output "
            "(default: its first).",
        ),
        click.option(
            "--preprocess",
            default=None,
            callback=_preprocess,
            metavar="MODE|mean=M,std=S",
            help="Override the base's preprocessing: none, unit (x/255), tf (x/127.5-1), torch, "
            "caffe, or any normalisation (x-mean)/std with one number or one per channel: "
            "mean=127.5,std=127.5 or 'mean=123.7,116.3,103.5;std=58.4,57.1,57.4'.",
        ),
    )


def layout() -> Decorator:
    """``--layout``: an ONNX file base's input layout (:mod:`features.bases.onnx_file`)."""
    return click.option(
        "--layout",
        type=click.Choice(LAYOUTS),
        default=None,
        help="An .onnx base's input layout (default: its metadata's, else read from its input "
        "shape: the axis of 1 or 3 channels).",
    )


def cv(help: str, default: int | None = None) -> Decorator:
    """``--cv``: folds of stratified (grouped) cross-validation, 2 or more."""
    return click.option(
        "--cv", type=click.IntRange(min=2), default=default, show_default=default is not None,
        help=help,
    )  # fmt: skip


def baselines(help: str, default: tuple[str, ...] = ()) -> Decorator:
    """``--baseline`` (repeatable): a baseline set beside the base on the same images
    (:data:`~bottleneck_transfer.features.choices.BASELINES`)."""
    return click.option(
        "--baseline", "baselines", multiple=True, type=click.Choice(BASELINES),
        default=default, show_default=bool(default), help=help,
    )  # fmt: skip


def candidates() -> Decorator:
    """``--bases A,B,C`` and ``--bases-file FILE``: candidate bases to rank."""
    return compose(
        click.option(
            "--bases",
            default=None,
            metavar="A,B,C",
            help="Candidate bases, as --base takes them (names, model files, hub handles, "
            "SavedModel folders).",
        ),
        click.option(
            "--bases-file",
            type=click.Path(exists=True, dir_okay=False),
            help="Candidates, one per line: BASE [key=value ...] with keys weights, "
            "image_size, pooling, layer, preprocess, trust_graph (# comments allowed).",
        ),
    )


def sample() -> Decorator:
    """``--sample N/class|N``: the stratified, seeded, grouped sample each candidate extracts."""
    return click.option(
        "--sample",
        default="50/class",
        show_default=True,
        metavar="N/class|N",
        help="Images each candidate extracts: N per class, or N in all; stratified, seeded and "
        "grouped (copies and --groups stay whole).",
    )
