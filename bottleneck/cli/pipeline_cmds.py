"""``bottleneck run`` and ``bottleneck cache ls|prune|export``."""

from __future__ import annotations

import warnings

import click
from bottleneck_transfer.cli import options
from bottleneck_transfer.cli.backend import ModelCommand


@click.command(cls=ModelCommand)
@click.argument("spec", type=click.Path(exists=True, dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Say what would be extracted or reused; run nothing.")
@options.cache_dir("Cache store (default: $BOTTLENECK_CACHE_DIR, else caches/ beside the spec).")
@options.quiet("No progress bars.")
@options.json_flag("Print the run record as JSON.")
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
        options.echo_json(record)


@click.group()
def cache() -> None:
    """List and prune the store (caches, fits, stored predictions, exports); export caches.

    \b
    Examples:
      bottleneck cache ls --cache-dir pipelines/caches
      bottleneck cache prune --older-than 30d
      bottleneck cache export caches/train.h5 -o train.parquet
      bottleneck cache dupes caches/train.h5
    """


_CACHE_DIR = options.cache_dir("Store folder (default: $BOTTLENECK_CACHE_DIR, else ./caches).")


@cache.command("ls")
@_CACHE_DIR
@options.json_flag()
def cache_ls(cache_dir: str | None, as_json: bool) -> None:
    """List what the store holds, with size, last use and a total per kind.

    Kinds: cache (with its base, source and rows), partial (an unfinished extraction),
    fit (a memoized head with its spec: its .json, listed, and its .skops), predictions (a
    fit's stored predictions) and export (the pipeline's exported model, with its head and
    form).

    \b
    Example:
      bottleneck cache ls --cache-dir pipelines/caches
    """
    from bottleneck_transfer.features.store import CacheStore, default_cache_dir, totals

    store = CacheStore(cache_dir or default_cache_dir())
    entries = store.entries()
    if as_json:
        options.echo_json(entries)
        return
    if not entries:
        click.echo(f"nothing stored in {store.root}")
    for e in entries:
        what = e["head"] or f"{e['base'] or ''}  {e['source'] or ''}"
        click.echo(
            f"{e['kind']:<11} {e['path']}  {e['status']:<8} "
            f"{e['rows'] if e['rows'] is not None else '-':>7} rows  "
            f"{e['size_bytes'] / 1e6:7.1f} MB  {e['last_used']}  {what}"
        )
    for kind, total in totals(entries).items():
        click.echo(f"total {kind:<11} {total['count']:>6}  {total['size_bytes'] / 1e6:9.1f} MB")


@cache.command("prune")
@_CACHE_DIR
@click.option("--older-than", help="Remove what was not used for this long (30d, 12h, 2w).")
@click.option("--partial", is_flag=True, help="Remove unfinished extractions.")
@click.option("--dry-run", is_flag=True, help="Say what would be removed; remove nothing.")
def cache_prune(
    cache_dir: str | None, older_than: str | None, partial: bool, dry_run: bool
) -> None:
    """Remove caches, fits, stored predictions and exports unused for a while, and/or
    unfinished extractions.

    Last use is when it was written or last reused. Only what the store wrote is
    removed: the regular files each entry's manifest lists, then the folders it emptied;
    never an entry a running extraction or pipeline holds, never through a symbolic link,
    never an entry holding anything its manifest does not list; what is kept is named,
    with the reason.

    \b
    Examples:
      bottleneck cache prune --older-than 30d --partial
      bottleneck cache prune --older-than 2w --dry-run
    """
    from bottleneck_transfer.features.store import CacheStore, default_cache_dir, parse_age

    store = CacheStore(cache_dir or default_cache_dir())
    age = parse_age(older_than) if older_than else None
    result = store.prune(older_than=age, partial=partial, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    for path in result.removed:
        click.echo(f"{verb} {path}")
    for path, why in result.kept:
        click.echo(f"kept {path}: {why}")
    click.echo(f"{len(result.removed)} {verb}, {len(result.kept)} kept")


@cache.command("export")
@click.argument("cache_path", metavar="CACHE", type=click.Path(dir_okay=False))
@options.out("A .parquet, .arrow or .feather file.", required=True)
@click.option("--wide", is_flag=True, help="One float32 column per feature (f0, f1, ...).")
@options.json_flag()
def cache_export(cache_path: str, out: str, wide: bool, as_json: bool) -> None:
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
    from bottleneck_transfer.features.cache.export import export_cache

    path = export_cache(cache_path, out, wide=wide)
    if as_json:
        options.echo_json({"path": str(path), "size_bytes": path.stat().st_size})
    else:
        click.echo(f"Wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")


@cache.command("dupes")
@click.argument("cache_path", metavar="CACHE", type=click.Path(dir_okay=False))
@click.option(
    "--threshold",
    type=click.FloatRange(0, 1, min_open=True),
    default=None,
    help="Cosine similarity of two images' features from which they are copies (default: "
    "the one every split uses, 0.9995; see the README, 'Duplicates').",
)
@click.option(
    "--show",
    type=click.IntRange(min=0),
    default=20,
    show_default=True,
    help="Groups to list (the counts cover all).",
)
@options.json_flag()
def cache_dupes(cache_path: str, threshold: float | None, show: int, as_json: bool) -> None:
    """List the groups of copies of one picture among CACHE's images.

    Exact copies hold identical features; near copies (a PNG, a JPEG and a resized copy of
    one photo) have features at cosine similarity >= the threshold. compare, train,
    learning curves and tuning keep each group on one side of every split.

    \b
    Examples:
      bottleneck cache dupes caches/fm-train.h5
      bottleneck cache dupes caches/photos.h5 --threshold 0.999 --json
    """
    from bottleneck_transfer.features.cache import FeatureCache
    from bottleneck_transfer.features.duplicates import NEAR_THRESHOLD, cache_duplicates

    with FeatureCache.open(cache_path) as opened:
        found, _ = cache_duplicates(opened, threshold=threshold or NEAR_THRESHOLD)
        ids, n_images = opened.ids, int(found.labels.size)
    groups = [
        {"exact": exact, "ids": [ids[r] for r in rows]}
        for rows, exact in zip(found.groups, found.exact, strict=True)
    ]
    counts = found.summary()
    if as_json:
        options.echo_json(
            {
                "path": cache_path,
                "threshold": found.threshold,
                "images": n_images,
                **counts,
                "groups_found": groups,
            }
        )
        return
    click.echo(
        f"{cache_path}: {counts['groups']} groups of copies among {n_images} images "
        f"({counts['exact_groups']} exact, {counts['near_groups']} near at cosine >= "
        f"{found.threshold}); {counts['rows']} images in them"
    )
    for number, group in enumerate(groups[:show], start=1):
        kind = "exact" if group["exact"] else "near"
        click.echo(f"group {number} ({kind}, {len(group['ids'])}): {', '.join(group['ids'])}")
    if len(groups) > show:
        click.echo(f"... {len(groups) - show} more (--show N, or --json)")


COMMANDS = [run, cache]
