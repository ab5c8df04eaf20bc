"""``bottleneck extract``, ``info`` and ``verify``."""

from __future__ import annotations

import json

import click
from bottleneck_transfer.errors import BottleneckError

_SHOW_FAILED = 10


def _echo_json(data: object) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


@click.command()
@click.argument("source")
@click.option(
    "--base",
    required=True,
    help="keras.applications name (resnet50, mobilenet_v2, ...), a .keras/.h5 file, or pixels.",
)
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False), help="Cache file.")
@click.option("--weights", default=None, help="imagenet (default for names), none, or a file.")
@click.option("--image-size", type=click.IntRange(min=1), help="Input size (default: the base's).")
@click.option("--pooling", type=click.Choice(["avg", "max"]), default="avg", show_default=True)
@click.option("--layer", default=None, help="Cut at this layer (default: penultimate).")
@click.option(
    "--preprocess",
    type=click.Choice(["none", "unit", "tf", "torch", "caffe"]),
    default=None,
    help="Override the base's preprocessing.",
)
@click.option("--classes", default=None, help="Class subset: names, indices or ranges (5-9).")
@click.option("--limit", type=click.IntRange(min=1), help="Use N images spread over the source.")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    help="Images per model call (default: 64 on a CPU, 256 on an accelerator, at 224x224; "
    "scaled by pixel count for other sizes).",
)
@click.option(
    "--compute-dtype",
    type=click.Choice(["float32", "bfloat16", "float16"]),
    default=None,
    help="Mixed precision for the base; features are stored float32 and the dtype is part "
    "of the cache fingerprint. bfloat16 also pays on CPUs with AVX512-BF16/AMX (ResNet50: "
    "1.15-1.5x, features within 0.5 %); measure yours with `bottleneck bench`.",
)
@click.option("--workers", type=click.IntRange(min=1), help="Decoding threads (default: cores).")
@click.option("--strict", is_flag=True, help="Fail at the first bad image instead of skipping.")
@click.option("--force", is_flag=True, help="Replace a cache made from different inputs.")
@click.option("--max-pixels", type=click.IntRange(min=1), default=100_000_000, show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def extract(source: str, base: str, out: str, quiet: bool, as_json: bool, **options) -> None:
    """Extract bottleneck features of SOURCE into an HDF5 cache.

    SOURCE is a class-folder tree, a flat folder, a CSV manifest (path,label), an IDX or
    NPZ file, or fashion-mnist:train|test. Interrupted runs resume; an identical cache is
    left alone; a cache from other inputs is refused unless --force.

    \b
    Examples:
      bottleneck extract data/flowers/train --base resnet50 --weights imagenet -o train.h5
      bottleneck extract fashion-mnist:train --base data/bases/fashion_mnist_0-4.keras \\
          --classes 5-9 -o caches/fm-train.h5
      bottleneck extract manifest.csv --base mobilenet_v2 --weights none --image-size 96 -o c.h5
    """
    from bottleneck_transfer.features.extract import extract as run_extract

    result = run_extract(source, base, out, progress=False if quiet else None, **options)
    if as_json:
        _echo_json(
            {
                "path": str(result.path),
                "rows": result.rows,
                "up_to_date": result.up_to_date,
                "resumed_from": result.resumed_from,
                "seconds": round(result.seconds, 3),
                "images_per_second": result.images_per_second,
                "failed": [{"id": i, "reason": r} for i, r in result.failed],
                "fingerprint": result.fingerprint,
            }
        )
        return
    if result.up_to_date:
        click.echo(f"{out} is up to date ({result.rows} rows, same inputs); nothing to do.")
        return
    resumed = f", resumed at item {result.resumed_from}" if result.resumed_from else ""
    click.echo(
        f"Wrote {out}: {result.rows} rows, {len(result.failed)} skipped, "
        f"{result.seconds:.1f} s ({result.images_per_second:.1f} images/s{resumed})."
    )
    for item_id, reason in result.failed[:_SHOW_FAILED]:
        click.echo(f"  skipped {item_id}: {reason}", err=True)
    if len(result.failed) > _SHOW_FAILED:
        click.echo(f"  … and {len(result.failed) - _SHOW_FAILED} more (bottleneck info)", err=True)


@click.command()
@click.argument("cache", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def info(cache: str, as_json: bool) -> None:
    """Show what a cache holds: rows, classes, base, software, failures.

    \b
    Example:
      bottleneck info caches/fm-train.h5 --json
    """
    from bottleneck_transfer.features.inspection import cache_info

    data = cache_info(cache)
    if as_json:
        _echo_json(data)
        return
    extraction = data["extraction"]
    lines = [
        f"cache        {data['path']} ({data['size_bytes'] / 1e6:.1f} MB)",
        f"rows         {data['rows']}  features {data['feature_dim']}",
        f"base         {data['base']}  weights {data['weights']}  layer {data['layer']}  "
        f"pooling {data['pooling']}  input {data['input_shape']}",
        f"source       {data['source']['kind']}  {data['source']['root']}",
        f"extracted    {data['created_at']}  {extraction.get('images_per_second')} images/s",
        "software     " + "  ".join(f"{k} {v}" for k, v in data["software"].items()),
        f"fingerprint  {data['fingerprint']}",
        f"classes      {len(data['classes'])}"
        + (f"  (+{data['unlabeled']} unlabeled)" if data["unlabeled"] else ""),
    ]
    lines += [f"  {c['index']:>3}  {c['name']:<24} {c['count']:>8}" for c in data["classes"]]
    lines.append(f"failed       {len(data['failed'])}")
    lines += [f"  {f['id']}: {f['reason']}" for f in data["failed"][:_SHOW_FAILED]]
    click.echo("\n".join(lines))


@click.command()
@click.argument("cache", type=click.Path(dir_okay=False))
@click.option("--no-source", is_flag=True, help="Skip checking the source files for changes.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
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
        _echo_json({"path": report.path, "ok": report.ok, "problems": report.problems})
    else:
        for check in report.checks:
            click.echo(f"ok    {check}")
        for problem in report.problems:
            click.echo(f"FAIL  {problem}")
    if not report.ok:
        raise BottleneckError(f"{cache}: {len(report.problems)} problem(s) found")


COMMANDS = [extract, info, verify]
