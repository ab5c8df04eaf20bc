"""The options every command shares, declared once, and the one ``--json`` printer.

Each name below is a decorator (``@options.out(help="Cache file.")``) so that a flag means
the same thing, with the same spelling and the same destination, on every command:
``-o/--out`` is where a command writes, ``--json`` prints the command's result as JSON,
``--quiet`` hides progress bars, ``--force`` replaces an existing output.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from bottleneck_transfer.errors import BottleneckError

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]

#: Compute precisions a base can run in (features are stored as float32).
COMPUTE_DTYPES = ("float32", "bfloat16", "float16")
#: ``--preprocess`` names (a keras.applications name is accepted by the library too).
PREPROCESS = ("none", "unit", "tf", "torch", "caffe")


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
        help=help,
    )


def json_flag(help: str = "Print the result as JSON.") -> Decorator:
    """``--json``: print the command's result as JSON instead of text."""
    return click.option("--json", "as_json", is_flag=True, help=help)


def quiet(help: str = "No progress bar.") -> Decorator:
    """``--quiet``: no progress bars or progress messages."""
    return click.option("--quiet", is_flag=True, help=help)


def force(help: str = "Replace an existing output.") -> Decorator:
    """``--force``: replace what is at ``--out``."""
    return click.option("--force", is_flag=True, help=help)


def refuse_overwrite(path: str | Path, force: bool) -> None:
    """Refuse to replace an existing ``--out`` unless ``--force`` (checked before any work)."""
    if not force and Path(path).exists():
        raise BottleneckError(f"{path} exists; pass --force to replace it, or choose another -o")


def cache_dir(help: str) -> Decorator:
    """``--cache-dir``: the cache store folder."""
    return click.option("--cache-dir", type=click.Path(file_okay=False), help=help)


def seed(help: str | None = None) -> Decorator:
    """``--seed``: the random seed."""
    return click.option("--seed", type=int, default=0, show_default=True, help=help)


def jobs() -> Decorator:
    """``--jobs``: parallel tuning trials."""
    return click.option(
        "--jobs", type=int, default=-1, show_default=True, help="Parallel tuning trials."
    )


def tune(help: str) -> Decorator:
    """``--tune``: search the head's grid on a validation split first."""
    return click.option("--tune", is_flag=True, help=help)


def bootstrap() -> Decorator:
    """``--bootstrap``: resamples for the 95% intervals."""
    return click.option(
        "--bootstrap",
        type=click.IntRange(min=100),
        default=1000,
        show_default=True,
        help="Bootstrap resamples for the 95% intervals.",
    )


def assert_min_accuracy(help: str) -> Decorator:
    """``--assert-min-accuracy``: exit non-zero below this accuracy."""
    return click.option("--assert-min-accuracy", type=click.FloatRange(0, 1), help=help)


def val_split() -> Decorator:
    """``--val-split``: hold out a stratified, seeded share of a single labelled source."""
    return click.option(
        "--val-split",
        type=click.FloatRange(0, 1, min_open=True, max_open=True),
        help="Hold out this share of the labelled images, stratified by class and seeded "
        "with --seed (for one labelled folder).",
    )


def classes(help: str = "Class subset: names, indices or ranges (5-9).") -> Decorator:
    """``--classes``: a class subset of a labelled source."""
    return click.option("--classes", default=None, help=help)


def limit(help: str = "Use N images spread over the source.") -> Decorator:
    """``--limit``: use N images of the source."""
    return click.option("--limit", type=click.IntRange(min=1), help=help)


def batch_size(help: str, default: int | None = None) -> Decorator:
    """``--batch-size``: images per model call."""
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


def base() -> Decorator:
    """``--base`` and what shapes it: weights, input size, pooling, layer, preprocessing."""
    return compose(
        click.option(
            "--base",
            required=True,
            help="keras.applications name (resnet50, mobilenet_v2, ...), a .keras/.h5 file, "
            "pixels, a KerasHub preset (keras-hub:NAME, hf://..., kaggle://..., a preset "
            "folder) or a SavedModel folder (with --preprocess).",
        ),
        click.option(
            "--weights", default=None, help="imagenet (default for names), none, or a file."
        ),
        click.option(
            "--image-size", type=click.IntRange(min=1), help="Input size (default: the base's)."
        ),
        click.option(
            "--pooling",
            type=click.Choice(["avg", "max", "token"]),
            default="avg",
            show_default=True,
            help="avg/max over a feature map's positions or a transformer's tokens (avg: the "
            "mean token); token: a transformer's class token (KerasHub bases).",
        ),
        click.option("--layer", default=None, help="Cut at this layer (default: penultimate)."),
        click.option(
            "--preprocess",
            type=click.Choice(PREPROCESS),
            default=None,
            help="Override the base's preprocessing.",
        ),
    )
