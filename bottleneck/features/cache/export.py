"""``bottleneck cache export``: a cache as a Parquet, Arrow or Feather file, streamed in
record batches (:mod:`.tables` makes them).

Example
-------
>>> from bottleneck_transfer.features.cache.export import export_cache
>>> export_cache("caches/train.h5", "train.parquet")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from bottleneck_transfer.atomic import atomic_path
from bottleneck_transfer.errors import CacheError
from bottleneck_transfer.features.cache import tables
from bottleneck_transfer.features.cache.reader import FeatureCache

#: File suffix -> how it is written. ``.arrow`` is the uncompressed Arrow IPC file format
#: (memory-mappable); ``.feather`` is the same format with LZ4 buffers (Feather version 2).
EXPORT_FORMATS = {".parquet": "parquet", ".arrow": "arrow", ".feather": "feather"}


def export_format(path: str | Path) -> str:
    """``parquet``, ``arrow`` or ``feather`` from the file's suffix.

    Raises
    ------
    CacheError
        For any other suffix.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in EXPORT_FORMATS:
        raise CacheError(
            f"cannot tell the export format of {path}: -o must end in "
            f"{', '.join(EXPORT_FORMATS)}. Received: out={str(path)!r}"
        )
    return EXPORT_FORMATS[suffix]


def export_cache(
    cache: FeatureCache | str | Path,
    out: str | Path,
    *,
    wide: bool = False,
    batch_rows: int = tables.BATCH_ROWS,
) -> Path:
    """Write a cache as a Parquet, Arrow or Feather file, streaming ``batch_rows`` at a time.

    Parameters
    ----------
    cache : FeatureCache or path
        The cache to export.
    out : str or Path
        ``.parquet``, ``.arrow`` or ``.feather``; it appears only when complete.
    wide : bool, default=False
        One float32 column per feature instead of one fixed-size list column.
    batch_rows : int, default=65536
        Rows read and written at a time (a Parquet row group); memory is flat in the rows.

    Returns
    -------
    Path
        ``out``.

    Examples
    --------
    >>> export_cache("caches/train.h5", "train.parquet")  # doctest: +SKIP
    >>> import duckdb  # doctest: +SKIP
    >>> duckdb.sql("select class_name, count(*) from 'train.parquet' group by 1")  # doctest: +SKIP
    """
    if not isinstance(cache, FeatureCache):
        with FeatureCache.open(cache) as opened:
            return export_cache(opened, out, wide=wide, batch_rows=batch_rows)
    kind = export_format(out)
    pa = tables.require("pyarrow")
    schema = tables.table_schema(cache, wide=wide)
    out = Path(out)
    with atomic_path(out) as tmp:
        if kind == "parquet":
            parquet = tables.require("pyarrow.parquet")
            writer = parquet.ParquetWriter(tmp, schema, **tables.PARQUET_OPTIONS)
        else:
            options = pa.ipc.IpcWriteOptions(compression="lz4" if kind == "feather" else None)
            writer = pa.ipc.new_file(tmp, schema, options=options)
        with writer:
            for batch in tables.record_batches(cache, wide=wide, batch_rows=batch_rows):
                writer.write_batch(batch)
    return out
