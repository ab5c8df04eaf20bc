"""``bottleneck run`` and ``bottleneck cache where|ls|prune|export|import|dupes``."""

from __future__ import annotations

import warnings

import click
from bottleneck_transfer.cli import options


@click.command()
@click.argument("spec", type=click.Path(exists=True, dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Say what would be extracted or reused; run nothing.")
@options.cache_dir("Cache store (default: $BOTTLENECK_CACHE_DIR, else caches/ beside the spec).")
@options.quiet()
@options.json_flag("the run record.")
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

    The store is one folder: --cache-dir, else $BOTTLENECK_CACHE_DIR, else ./caches
    (`bottleneck run` uses caches/ beside its spec); `bottleneck cache where` prints it.

    \b
    Examples:
      bottleneck cache where --json
      bottleneck cache ls --cache-dir pipelines/caches
      bottleneck cache prune --older-than 30d
      bottleneck cache ls | grep partial | bottleneck cache prune -
      bottleneck cache export caches/train.h5 -o train.parquet
      bottleneck cache import embeddings.parquet -o caches/emb.h5
      bottleneck cache dupes caches/train.h5
    """


_CACHE_DIR = options.cache_dir("Store folder (default: $BOTTLENECK_CACHE_DIR, else ./caches).")


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


@cache.command("where")
@_CACHE_DIR
@options.json_flag("the folder and what chose it.")
def cache_where(cache_dir: str | None, as_json: bool) -> None:
    """Print the store folder that `cache ls`, `cache prune` and `compare --baseline` use.

    It is --cache-dir, else $BOTTLENECK_CACHE_DIR, else caches/ in the working folder
    (`bottleneck run` uses caches/ beside its spec unless one of the first two is given).

    \b
    Examples:
      bottleneck cache where --json
      BOTTLENECK_CACHE_DIR=~/store bottleneck cache where
    """
    from bottleneck_transfer.features.store import store_location

    root, origin = store_location(cache_dir)
    if as_json:
        options.echo_json({"path": str(root), "from": origin, "exists": root.is_dir()})
        return
    click.echo(f"{root}\t({origin}{'' if root.is_dir() else '; not created yet'})")


@cache.command("ls")
@_CACHE_DIR
@click.option(
    "--long", is_flag=True, help="Also each entry's status, rows and what it is, and totals."
)
@options.json_flag("every entry with all its details.")
def cache_ls(cache_dir: str | None, long: bool, as_json: bool) -> None:
    """List what the store holds: one line per entry, then one summary line.

    Each line is PATH, KIND, SIZE and LAST USE, tab-separated (--long adds the status,
    rows and what it is: base and source, head spec, exported head, and a total per kind);
    the summary line starts with '#': entries, bytes and the oldest last use. Piped into
    `bottleneck cache prune -`, the listed entries are removed. Kinds: cache, partial (an
    unfinished extraction), fit (a memoized head: its .json, listed, and its .skops),
    predictions (a fit's stored predictions) and export (the pipeline's exported model).

    \b
    Examples:
      bottleneck cache ls --cache-dir pipelines/caches
      bottleneck cache ls --long
      bottleneck cache ls | grep partial | bottleneck cache prune -
    """
    from bottleneck_transfer.features.store import CacheStore, overall, store_location, totals

    store = CacheStore(store_location(cache_dir)[0])
    entries = store.entries()
    if as_json:
        options.echo_json(entries)
        return
    for e in entries:
        cells = [e["path"], e["kind"], _mb(e["size_bytes"]), e["last_used"]]
        if long:
            what = e["head"] or f"{e['base'] or ''}  {e['source'] or ''}".strip()
            rows = f"{e['rows']} rows" if e["rows"] is not None else "-"
            cells += [e["status"], rows, what]
        click.echo("\t".join(cells))
    if long:
        for kind, total in totals(entries).items():
            click.echo(f"# total {kind:<11} {total['count']:>6}  {_mb(total['size_bytes'])}")
    summary = overall(entries)
    oldest = f", oldest used {summary['oldest']}" if summary["oldest"] else ""
    click.echo(
        f"# {summary['entries']} entries, {summary['size_bytes']} bytes "
        f"({_mb(summary['size_bytes'])}){oldest} in {store.root}"
    )


def _read_entries(values: tuple[str, ...]) -> list[str] | None:
    """The entry paths given: each value, or for ``-`` the first tab-separated field of each
    line of stdin that is not blank or a ``#`` comment (what `cache ls` prints)."""
    if not values:
        return None
    paths = []
    for value in values:
        if value != "-":
            paths.append(value)
            continue
        with click.open_file("-") as stdin:
            for line in stdin:
                if line.strip() and not line.lstrip().startswith("#"):
                    paths.append(line.rstrip("\n").split("\t", 1)[0].strip())
    return paths


@cache.command("prune")
@click.argument("entries", nargs=-1, metavar="[ENTRY]... | -")
@_CACHE_DIR
@click.option("--older-than", help="Remove what was not used for this long (30d, 12h, 2w).")
@click.option("--partial", is_flag=True, help="Remove unfinished extractions.")
@click.option("--dry-run", is_flag=True, help="Say what would be removed; remove nothing.")
@options.json_flag("what was removed and what was kept, and why.")
def cache_prune(
    entries: tuple[str, ...],
    cache_dir: str | None,
    older_than: str | None,
    partial: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Remove store entries: those named (ENTRY paths, or - to read the lines `cache ls`
    prints), those unused for a while, and/or unfinished extractions.

    Named entries are removed unless --older-than or --partial narrows them. Last use is
    when an entry was written or last reused. Only what the store wrote is removed: the
    regular files each entry's manifest lists, then the folders it emptied; never a path
    that is not an entry of the store, never an entry a running extraction or pipeline
    holds, never through a symbolic link, never an entry holding anything its manifest
    does not list; what is kept is named, with the reason.

    \b
    Examples:
      bottleneck cache prune --older-than 30d --partial
      bottleneck cache prune --older-than 2w --dry-run
      bottleneck cache ls | grep partial | bottleneck cache prune -
      bottleneck cache ls --cache-dir s | bottleneck cache prune - --cache-dir s --older-than 1w
    """
    from bottleneck_transfer.features.store import CacheStore, parse_age, store_location

    store = CacheStore(store_location(cache_dir)[0])
    age = parse_age(older_than) if older_than else None
    result = store.prune(
        older_than=age, partial=partial, dry_run=dry_run, only=_read_entries(entries)
    )
    if as_json:
        options.echo_json(
            {
                "dry_run": dry_run,
                "removed": [str(p) for p in result.removed],
                "kept": [{"path": str(p), "why": why} for p, why in result.kept],
            }
        )
        return
    verb = "would remove" if dry_run else "removed"
    for path in result.removed:
        click.echo(f"{verb} {path}")
    for path, why in result.kept:
        click.echo(f"kept {path}: {why}")
    click.echo(f"{len(result.removed)} {verb}, {len(result.kept)} kept")


@cache.command("export")
@click.argument("cache_path", metavar="CACHE", type=click.Path(dir_okay=False))
@options.out("a .parquet, .arrow or .feather file.", required=True)
@options.force()
@click.option("--wide", is_flag=True, help="One float32 column per feature (f0, f1, ...).")
@options.json_flag()
def cache_export(cache_path: str, out: str, force: bool, wide: bool, as_json: bool) -> None:
    """Write CACHE as a table for pandas, polars or DuckDB: id, label, class_name, features.

    Features are one fixed_size_list<float32>[D] column (or one column each with --wide):
    Polars reads it as Array(Float32, D), DuckDB as FLOAT[D] from .arrow/.feather and as
    FLOAT[] from Parquet (which has no fixed-size list); the cache's provenance is in the
    file's metadata. `bottleneck cache import` reads it back. Needs pyarrow
    (pip install 'bottleneck-transfer[arrow]').

    \b
    Examples:
      bottleneck cache export caches/train.h5 -o train.parquet
      bottleneck cache export caches/train.h5 -o train.feather --wide
      duckdb -c "select class_name, count(*) from 'train.parquet' group by 1"
    """
    from bottleneck_transfer.features.cache.export import export_cache

    options.refuse_overwrite(out, force)
    path = export_cache(cache_path, out, wide=wide)
    if as_json:
        options.echo_json({"path": str(path), "size_bytes": path.stat().st_size})
    else:
        click.echo(f"Wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")


@cache.command("import")
@click.argument("table", type=click.Path(dir_okay=False))
@options.out("the cache (.h5).", required=True)
@options.force()
@click.option(
    "--features",
    metavar="NAME|GLOB",
    help="The feature column (a list of numbers) or a glob of numeric columns ('emb_*'). "
    "Default: features, else f0, f1, ... (what `cache export` writes).",
)
@click.option("--id-column", default="id", show_default=True, help="The column of row ids.")
@click.option("--no-ids", is_flag=True, help="The table has no ids: number the rows row:<i>.")
@click.option(
    "--label-column",
    default="label",
    show_default=True,
    help="Integer labels (named by the table's metadata or a class_name column) or class names.",
)
@click.option("--no-labels", is_flag=True, help="The table has no labels: every row unlabeled.")
@options.json_flag()
def cache_import(
    table: str,
    out: str,
    force: bool,
    features: str | None,
    id_column: str,
    no_ids: bool,
    label_column: str,
    no_labels: bool,
    as_json: bool,
) -> None:
    """Write TABLE (Parquet, Arrow or Feather) of ids, labels and feature vectors as a cache.

    TABLE is what `cache export` writes, or another tool's embeddings: one list<float> or
    fixed_size_list<float> column, or many numeric columns. Rows stream a row group at a
    time; every vector is checked (same length, finite); the cache appears complete or not
    at all. Its provenance names TABLE, its sha256 and what wrote it; the base is "imported".

    \b
    Examples:
      bottleneck cache import train.parquet -o caches/train.h5
      bottleneck cache import emb.feather -o caches/emb.h5 --features 'emb_*' --no-ids
      bottleneck cache import hf.parquet -o caches/hf.h5 --label-column category
    """
    from bottleneck_transfer.features.cache import FeatureCache
    from bottleneck_transfer.features.cache.table_import import import_table

    options.refuse_overwrite(out, force)
    path = import_table(
        table,
        out,
        features=features,
        id_column=None if no_ids else id_column,
        label_column=None if no_labels else label_column,
    )
    with FeatureCache.open(path) as imported:
        rows, dim, classes = len(imported), imported.dim, len(imported.class_names)
    if as_json:
        options.echo_json({"path": str(path), "rows": rows, "dim": dim, "classes": classes})
    else:
        click.echo(f"Wrote {path} ({rows} rows x {dim} features, {classes} classes)")


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
    from bottleneck_transfer.features.bases.common import items_word
    from bottleneck_transfer.features.cache import FeatureCache
    from bottleneck_transfer.features.duplicates import NEAR_THRESHOLD, cache_duplicates

    with FeatureCache.open(cache_path) as opened:
        found, _ = cache_duplicates(opened, threshold=threshold or NEAR_THRESHOLD)
        ids, n_images = opened.ids, int(found.labels.size)
        unit = items_word(opened.provenance.get("base", {}))
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
        f"{cache_path}: {counts['groups']} groups of copies among {n_images} {unit} "
        f"({counts['exact_groups']} exact, {counts['near_groups']} near at cosine >= "
        f"{found.threshold}); {counts['rows']} {unit} in them"
    )
    for number, group in enumerate(groups[:show], start=1):
        kind = "exact" if group["exact"] else "near"
        click.echo(f"group {number} ({kind}, {len(group['ids'])}): {', '.join(group['ids'])}")
    if len(groups) > show:
        click.echo(f"... {len(groups) - show} more (--show N, or --json)")


COMMANDS = [run, cache]
