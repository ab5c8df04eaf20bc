"""``bottleneck extract``, ``info`` and ``verify``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click
from bottleneck_transfer.cli import options
from bottleneck_transfer.errors import BottleneckError

if TYPE_CHECKING:
    from bottleneck_transfer.features.extract import ExtractResult

_SHOW_FAILED = 10


@click.command()
@click.argument("source")
@options.base()
@options.layout()
@options.trust_graph("a SavedModel or ONNX base")
@options.out("the cache file.", required=True)
@options.classes()
@options.limit()
@options.groups()
@options.target()
@options.source_kind()
@options.batch_size(
    "Images per model call (default: 64 on a CPU, 256 on an accelerator, at 224x224; "
    "scaled by pixel count for other sizes). A text base: texts per call at --max-length "
    "tokens (default 32 on a CPU, 128 on an accelerator), the token budget of a call."
)
@options.compute_dtype(
    "Mixed precision for the base; features are stored float32 and the dtype is part "
    "of the cache fingerprint. bfloat16 also pays on CPUs with AVX512-BF16/AMX (ResNet50: "
    "1.15-1.5x, features within 0.5 %); measure yours with `bottleneck bench`."
)
@options.runtime()
@click.option(
    "--layers",
    default=None,
    metavar="A,B,C",
    help="Several layers in one pass: one cache per layer (OUT holds the first, the others "
    "go beside it as STEM.LAYER.h5), each equal to a --layer extraction. Combines with "
    "--update (an image new or changed for any layer runs once), --val-split, --engine "
    "and --augment.",
)
@click.option(
    "--update",
    is_flag=True,
    help="OUT exists for an older state of SOURCE: extract only new or changed images (by "
    "size and time), drop removed ones, reuse every other row.",
)
@click.option(
    "--augment",
    default=None,
    metavar="RECIPE",
    help="Also store augmented views of every image, made in the same pass: a comma list of "
    "flip, crop, rotate, color (seeded by --seed; with --views). Combines with --layers, "
    "--update, --engine and --val-split (views in the train part only).",
)
@click.option(
    "--views",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Augmented views per image (0: the plain cache).",
)
@options.image_reading()
@options.storage()
@options.engine()
@options.val_split()
@click.option(
    "--val-out",
    type=click.Path(dir_okay=False),
    help="With --val-split: the validation cache (default: OUT's name with -val).",
)
@options.seed("--val-split, --augment and random weights (--weights none).")
@options.force("a cache made from different inputs.")
@options.quiet()
@options.json_flag()
def extract(
    source: str,
    base: str,
    out: str,
    val_split: float | None,
    val_out: str | None,
    seed: int,
    layers: str | None,
    quiet: bool,
    as_json: bool,
    **settings,
) -> None:
    """Extract bottleneck features of SOURCE into an HDF5 cache.

    SOURCE is a class-folder tree, a flat folder, a CSV manifest (path,label), an IDX or
    NPZ file, WebDataset .tar shards, a Parquet/Arrow table of image bytes (the Hugging Face
    datasets layout), or fashion-mnist:train|test; folders, manifests, shards and tables may
    be fsspec URLs (s3://, gs://, http://). Interrupted runs resume; an identical cache is
    left alone; a cache from other inputs is refused unless --force.

    \b
    Examples:
      bottleneck extract data/flowers/train --base resnet50 --weights imagenet -o train.h5
      bottleneck extract fashion-mnist:train --base data/bases/fashion_mnist_0-4.keras \\
          --classes 5-9 -o caches/fm-train.h5
      bottleneck extract manifest.csv --base mobilenet_v2 --weights none --image-size 96 -o c.h5
      bottleneck extract scans.csv --groups patient --base resnet50 --val-split 0.2 -o s.h5
      bottleneck extract ages.csv --target regression:column=age,unit=years --base resnet50 \\
          -o ages.h5
      bottleneck extract data/photos --base resnet50 --val-split 0.2 -o caches/photos.h5
      bottleneck extract 'shards/train-{000..015}.tar' --base resnet50 -o train.h5
      bottleneck extract s3://bucket/beans/train.parquet --base resnet50 -o beans.h5
      bottleneck extract photos.arrow --base resnet50 --image-column img \\
          --label-column species -o p.h5
      bottleneck extract data/photos --base ./tfhub_model --preprocess unit -o hub.h5
      bottleneck extract data/photos --base ./custom_sm --preprocess unit --trust-graph -o c.h5
      bottleneck extract data/photos --base resnet50 -o photos.h5 --store-dtype float16
      bottleneck extract data/photos --base mobilenet_v2 -o photos.h5 --runtime auto
      bottleneck extract data/photos --base resnet18_torch.onnx --preprocess torch \\
          --output features -o photos.h5
      bottleneck extract data/photos --base resnet50 -o photos.h5 --update
      bottleneck extract data/photos --base resnet50 -o photos.h5 --update \\
          --layers avg_pool,conv5_block2_out,conv4_block6_out
      bottleneck extract data/big --base resnet50 -o big.h5 --engine dask --workers 4
      bottleneck extract data/big --base resnet50 -o big.h5 --engine dask \\
          --scheduler tcp://host:8786 --timeout 120
      bottleneck extract data/photos --base resnet50 -o photos.h5 --val-split 0.2 \\
          --augment flip,crop,rotate,color --views 8 --seed 0
    """
    from bottleneck_transfer.features.extract import extract as run_extract
    from bottleneck_transfer.features.extract import extract_split

    settings["progress"] = False if quiet else None
    names = None if layers is None else [n.strip() for n in layers.split(",") if n.strip()]
    if names is not None and settings.pop("layer") is not None:
        raise click.UsageError("--layers cannot be combined with --layer")
    if val_split is not None:
        val_out = val_out or str(Path(out).with_stem(Path(out).stem + "-val"))
        parts = extract_split(
            source, base, out, val_out, val_split=val_split, seed=seed, layers=names, **settings
        )
    elif names is not None:
        from bottleneck_transfer.features.extract import extract_layers

        parts = (extract_layers(source, base, out, names, seed=seed, **settings),)
    else:
        parts = (run_extract(source, base, out, seed=seed, **settings),)
    if names is not None:  # each part's caches by layer
        parts = tuple(dict(zip(names, got, strict=True)) for got in parts)
    results = dict(zip(("train", "val"), parts, strict=False))  # the val part: with --val-split
    if as_json:
        summaries = _summaries(results)
        options.echo_json(summaries if val_split is not None else summaries["train"])
        return
    for result in _leaves(results):
        _echo_result(result)


def _summaries(results: dict) -> dict:
    """``results`` (by part and/or by layer) with each result as its :func:`_summary`."""
    return {
        key: _summaries(value) if isinstance(value, dict) else _summary(value)
        for key, value in results.items()
    }


def _leaves(results: dict) -> list[ExtractResult]:
    """Every result of ``results`` (by part and/or by layer), in order."""
    return [
        leaf
        for value in results.values()
        for leaf in (_leaves(value) if isinstance(value, dict) else [value])
    ]


def _summary(result: ExtractResult) -> dict:
    return {
        "path": str(result.path),
        "rows": result.rows,
        "up_to_date": result.up_to_date,
        "resumed_from": result.resumed_from,
        "seconds": round(result.seconds, 3),
        "images_per_second": result.images_per_second,
        "update": result.update,
        "failed": [{"id": i, "reason": r} for i, r in result.failed],
        "fingerprint": result.fingerprint,
    }


def _echo_result(result: ExtractResult) -> None:
    out = result.path
    if result.up_to_date:
        click.echo(f"{out} is up to date ({result.rows} rows, same inputs); nothing to do.")
        return
    resumed = f", resumed at item {result.resumed_from}" if result.resumed_from else ""
    if result.update is not None:
        counts = result.update
        click.echo(
            f"Updated {out}: {result.rows} rows; {counts['extracted']} {result.unit} extracted, "
            f"{counts['reused']} reused, {counts['dropped']} dropped; {len(result.failed)} "
            f"skipped, {result.seconds:.1f} s."
        )
    else:
        click.echo(
            f"Wrote {out}: {result.rows} rows, {len(result.failed)} skipped, "
            f"{result.seconds:.1f} s ({result.images_per_second:.1f} {result.unit}/s{resumed})."
        )
    for item_id, reason in result.failed[:_SHOW_FAILED]:
        click.echo(f"  skipped {item_id}: {reason}", err=True)
    if len(result.failed) > _SHOW_FAILED:
        click.echo(f"  … and {len(result.failed) - _SHOW_FAILED} more (bottleneck info)", err=True)


@click.command()
@click.argument("cache", type=click.Path(dir_okay=False))
@options.json_flag()
def info(cache: str, as_json: bool) -> None:
    """Show what a cache holds: rows, classes, base, software, failures.

    \b
    Example:
      bottleneck info caches/fm-train.h5 --json
    """
    from bottleneck_transfer.features.inspection import cache_info

    data = cache_info(cache)
    if as_json:
        options.echo_json(data)
        return
    extraction = data["extraction"]
    lines = [
        f"cache        {data['path']} ({data['size_bytes'] / 1e6:.1f} MB)",
        f"rows         {data['rows']}{_views(data)}  features {data['feature_dim']} "
        f"{data['store_dtype']}" + (f" {data['compression']}" if data["compression"] else ""),
        f"base         {data['base']}  weights {data['weights']}  layer {data['layer']}  "
        f"pooling {data['pooling']}  input {data['input_shape']}",
        *(f"  {key:<22} {value}" for key, value in data["hub"].items()),
        f"source       {data['source']['kind']}  {data['source']['root']}" + _split(data),
        f"extracted    {data['created_at']}  {extraction.get('images_per_second')} "
        f"{data['unit']}/s",
        "software     " + "  ".join(f"{k} {v}" for k, v in data["software"].items()),
        f"fingerprint  {data['fingerprint']}",
        f"target       {data['target']['described']}",
    ]
    if "rows" in data["target"]:  # multi-label tags, a regression value
        lines += [
            "  "
            + "  ".join(
                f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()
            )
            for row in data["target"]["rows"]
        ]
    else:
        lines.append(
            f"classes      {len(data['classes'])}"
            + (f"  (+{data['unlabeled']} unlabeled)" if data["unlabeled"] else "")
        )
        lines += [f"  {c['index']:>3}  {c['name']:<24} {c['count']:>8}" for c in data["classes"]]
    lines.append(f"failed       {len(data['failed'])}")
    lines += [f"  {f['id']}: {f['reason']}" for f in data["failed"][:_SHOW_FAILED]]
    click.echo("\n".join(lines))


def _views(data: dict) -> str:
    views = data["views"]
    if not views:
        return ""
    return (
        f" ({data['images']} images + {views['count']} augmented views of each: "
        f"{','.join(views['recipe'])}, seed {views['seed']})"
    )


def _split(data: dict) -> str:
    split = data["source"].get("split")
    if not split:
        return ""
    return f"  ({split['part']} part of a {split['fraction']:g} split, seed {split['seed']})"


@click.command()
@click.argument("cache", type=click.Path(dir_okay=False))
@click.option("--no-source", is_flag=True, help="Skip checking the source files for changes.")
@options.json_flag()
def verify(cache: str, no_source: bool, as_json: bool) -> None:
    """Check a cache: format, completeness, shapes, finite values, source unchanged.

    Exits 1 when a problem is found.

    \b
    Example:
      bottleneck verify caches/fm-train.h5
    """
    from bottleneck_transfer.features.inspection import verify_cache

    report = verify_cache(cache, check_source=not no_source)
    if as_json:
        checks = [{"check": c.name, "ok": c.ok, "problems": c.problems} for c in report.checks]
        options.echo_json(
            {"path": report.path, "ok": report.ok, "problems": report.problems, "checks": checks}
        )
    else:
        click.echo("\n".join(report.lines()))
    if not report.ok:
        raise BottleneckError(f"{cache}: {len(report.problems)} problem(s) found")


@click.command("info-base")
@click.argument("base")
@options.base_settings()
@options.layout()
@options.json_flag()
def info_base(base: str, as_json: bool, **settings) -> None:
    """Show what a base is, without extracting: an .onnx file's inputs, outputs (names,
    shapes, dtypes), operator domains and metadata (read, not run); any other base's input,
    feature size and description as --base with these settings builds it.

    \b
    Examples:
      bottleneck info-base resnet18.onnx
      bottleneck info-base mobilenet_v2 --weights none --image-size 96 --json
    """
    from bottleneck_transfer.features.base_info import base_info, info_lines

    given = {key: value for key, value in settings.items() if value is not None}
    data = base_info(base, **given)
    if as_json:
        options.echo_json(data)
    else:
        click.echo("\n".join(info_lines(data)))


COMMANDS = [extract, info, info_base, verify]
