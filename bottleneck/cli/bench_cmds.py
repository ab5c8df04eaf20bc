"""``bottleneck bench``: throughput of the base, the decoder, extraction and the usual recipe."""

from __future__ import annotations

import json
from pathlib import Path

import click
from bottleneck_transfer.atomic import atomic_write_text
from bottleneck_transfer.cli import options
from bottleneck_transfer.errors import BottleneckError


@click.command()
@click.option(
    "--base",
    default="mobilenet_v2",
    show_default=True,
    help="keras.applications name, a .keras file, or fashion-mnist (the shipped base).",
)
@click.option("--image-size", type=click.IntRange(min=8), default=224, show_default=True)
@click.option(
    "--weights",
    default="none",
    show_default=True,
    help="none (random: same compute as imagenet, no download), imagenet, or a file.",
)
@click.option(
    "--source",
    default=None,
    help="Images to extract (default: generated photo-like JPEGs, made once and reused).",
)
@click.option("--images", "n_images", type=click.IntRange(min=1), default=512, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), help="Default: extraction's default.")
@click.option("--workers", type=click.IntRange(min=1), help="Decoding threads (default: cores).")
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True)
@click.option(
    "--parts",
    default=None,
    help="Comma list of model,decode,extract,peer,predict_numpy,heads,compare,dense,read,memory,"
    "compare6k,views,float16-heads,statistics (default: all but predict_numpy, memory, "
    "compare6k, views, float16-heads and statistics; --suite adds memory and compare6k). "
    "views and float16-heads: each head of pipelines/fashion_mnist.toml with 0 vs 8 "
    "augmented views and float32 vs float16 caches, paired on 5 seeded draws of 10 and 50 "
    "labelled images per class, scored on 2,000 test images. statistics: null rejection "
    "rates and interval coverage of compare's tests on simulated data, before and after.",
)
@options.compute_dtype("Run the base in this precision (features are stored as float32).")
@click.option(
    "--frozen-epochs",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Epochs actually run for the frozen-base fit; the rest of 10 are extrapolated.",
)
@click.option("--suite", is_flag=True, help="The README table: mobilenet_v2, resnet50, FM.")
@options.out("also the JSON report.")
@options.force()
@options.quiet()
@options.json_flag("the report.")
def bench(
    base: str,
    image_size: int,
    weights: str,
    source: str | None,
    n_images: int,
    batch_size: int | None,
    workers: int | None,
    repeats: int,
    parts: str | None,
    compute_dtype: str | None,
    frozen_epochs: int,
    suite: bool,
    out: str | None,
    force: bool,
    quiet: bool,
    as_json: bool,
) -> None:
    """Measure where extraction time goes: model, decoding, writes, vs the limit.

    Images/s of the base alone (R_model), decoding alone (R_decode), `extract` end to end
    and the usual Keras recipe (image_dataset_from_directory + predict); the limit
    L = 1/(1/R_model + 1/R_decode) on a CPU (min of the two with an accelerator); head
    fit times on the cache; a four-head compare (holdout and 5-fold) against the time the
    cache took to extract; a dense head trained from the cache vs with the frozen base in
    model.fit; cache read vs np.load; peak memory for 10k vs 60k images. Ratios are
    medians of per-round ratios (rounds interleave the paths). Run it on an idle machine.

    \b
    Examples:
      bottleneck bench --base mobilenet_v2 --image-size 224 --source data/photos
      bottleneck bench --base resnet50 --images 256 --parts model,decode,extract,peer
      bottleneck bench --suite --json --out bench.json
      bottleneck bench --parts views,float16-heads --out data/bench/accuracy.json
    """
    from bottleneck_transfer.bench.suite import PARTS, format_table, run_bench

    if out is not None:
        options.refuse_overwrite(out, force)

    chosen = None
    if parts:
        chosen = [p.strip() for p in parts.split(",") if p.strip()]
        unknown = sorted(set(chosen) - set(PARTS))
        if unknown:
            raise click.BadParameter(
                f"unknown part {unknown[0]!r}; valid: {', '.join(PARTS)}", param_hint="--parts"
            )
    if source is not None and not suite and not Path(source).exists() and ":" not in source:
        raise BottleneckError(f"--source {source} does not exist")

    def log(message: str) -> None:
        if not quiet:
            click.echo(f"[bench] {message}", err=True)

    report = run_bench(
        base,
        suite=suite,
        parts=chosen,
        repeats=repeats,
        log=log,
        image_size=image_size,
        n_images=n_images,
        weights=weights,
        source=source,
        batch_size=batch_size,
        workers=workers,
        compute_dtype=compute_dtype,
        frozen_epochs=frozen_epochs,
    )
    if out:
        atomic_write_text(out, json.dumps(report, indent=2, default=str) + "\n")
    if as_json:
        options.echo_json(report)
    else:
        click.echo(format_table(report))


COMMANDS = [bench]
