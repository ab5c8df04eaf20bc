"""``bottleneck run`` and ``bottleneck cache ls|prune|export``."""

from __future__ import annotations

import json
import warnings

import click


@click.command()
@click.argument("spec", type=click.Path(exists=True, dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Say what would be extracted or reused; run nothing.")
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False),
    help="Cache store (default: $BOTTLENECK_CACHE_DIR, else caches/ beside the spec).",
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option("--json", "as_json", is_flag=True, help="Print the run record as JSON.")
def run(spec: str, dry_run: bool, cache_dir: str | None, quiet: bool, as_json: bool) -> None:
    """Run a pipeline SPEC (TOML): extract → compare heads → export the winner → predict.

    Every cache is keyed by its extraction fingerprint, so a second run extracts nothing
    and a spec that changes only its heads reruns only the comparison.

    \b
    Examples:
      bottleneck run pipelines/fashion_mnist.toml
      bottleneck run pipelines/fashion_mnist.toml --dry-run
    """
    from bottleneck_transfer.errors import BottleneckWarning
    from bottleneck_transfer.pipeline.run import run_pipeline

    echo = (lambda _text: None) if as_json else click.echo
    with warnings.catch_warnings():
        if not as_json:  # the printed comparison already says them, once
            warnings.simplefilter("ignore", BottleneckWarning)
        record = run_pipeline(
            spec,
            cache_dir=cache_dir,
            dry_run=dry_run,
            progress=False if quiet else None,
            echo=echo,
        )
    if as_json:
        click.echo(json.dumps(record, indent=2, default=str))


@click.group()
def cache() -> None:
    """List, prune and export caches.

    \b
    Examples:
      bottleneck cache ls --cache-dir pipelines/caches
      bottleneck cache prune --older-than 30d
      bottleneck cache export caches/train.h5 -o train.parquet
    """


_CACHE_DIR = click.option(
    "--cache-dir",
    type=click.Path(file_okay=False),
    help="Store folder (default: $BOTTLENECK_CACHE_DIR, else ./caches).",
)


@cache.command("ls")
@_CACHE_DIR
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def cache_ls(cache_dir: str | None, as_json: bool) -> None:
    """List caches with their base, source, rows, size and last use.

    \b
    Example:
      bottleneck cache ls --cache-dir pipelines/caches
    """
    from bottleneck_transfer.features.store import CacheStore, default_cache_dir

    entries = CacheStore(cache_dir or default_cache_dir()).entries()
    if as_json:
        click.echo(json.dumps(entries, indent=2))
        return
    if not entries:
        click.echo("no caches")
    for e in entries:
        click.echo(
            f"{e['path']}  {e['status']:<8} {e['rows'] if e['rows'] is not None else '-':>7} rows  "
            f"{e['size_bytes'] / 1e6:7.1f} MB  {e['last_used']}  {e['base'] or ''}  "
            f"{e['source'] or ''}"
        )


@cache.command("prune")
@_CACHE_DIR
@click.option("--older-than", help="Remove caches not used for this long (30d, 12h, 2w).")
@click.option("--partial", is_flag=True, help="Remove unfinished extractions.")
def cache_prune(cache_dir: str | None, older_than: str | None, partial: bool) -> None:
    """Remove caches unused for a while, and/or unfinished extractions.

    \b
    Example:
      bottleneck cache prune --older-than 30d --partial
    """
    from bottleneck_transfer.features.store import CacheStore, default_cache_dir, parse_age

    store = CacheStore(cache_dir or default_cache_dir())
    removed = store.prune(older_than=parse_age(older_than) if older_than else None, partial=partial)
    for path in removed:
        click.echo(f"removed {path}")
    click.echo(f"{len(removed)} removed")


@cache.command("export")
@click.argument("cache_path", metavar="CACHE", type=click.Path(dir_okay=False))
@click.option(
    "-o",
    "--out",
    required=True,
    type=click.Path(dir_okay=False),
    help="A .parquet, .arrow or .feather file.",
)
@click.option("--wide", is_flag=True, help="One float32 column per feature (f0, f1, ...).")
def cache_export(cache_path: str, out: str, wide: bool) -> None:
    """Write CACHE as a table for pandas, polars or DuckDB: id, label, class_name, features.

    Features are one fixed-size list column of float32 (or one column each with --wide);
    the cache's provenance is in the file's metadata. Needs pyarrow
    (pip install 'bottleneck-transfer[arrow]').

    \b
    Examples:
      bottleneck cache export caches/train.h5 -o train.parquet
      bottleneck cache export caches/train.h5 -o train.feather --wide
      duckdb -c "select class_name, count(*) from 'train.parquet' group by 1"
    """
    from bottleneck_transfer.features.tables import export_cache

    path = export_cache(cache_path, out, wide=wide)
    click.echo(f"Wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")


COMMANDS = [run, cache]
