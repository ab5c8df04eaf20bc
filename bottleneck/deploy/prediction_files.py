"""Predictions written as they come: CSV or Parquet, resumable, never a corrupt file.

Like an extraction's partial cache (:mod:`features.cache.partial`), the rows go to a folder
``<out>.partial`` first: every :data:`WRITE_ROWS` rows become one chunk file, written to a
temporary and renamed (:func:`~bottleneck_transfer.atomic.atomic_path`), named by its number
and the source position it ends at (``chunk-000003-000000012288.csv``). A killed run leaves
whole chunks only; a rerun with the same output checks the folder is of the same run
(``meta.json``: model, images, columns) and goes on from the last chunk's position, so every
image is written once, in source order. At the end the chunks are copied, one at a time,
into ``out`` (a Parquet row group each), which appears whole or not at all, and the folder
is removed. Memory holds one chunk.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

from bottleneck_transfer.atomic import atomic_path
from bottleneck_transfer.entries import remove_temporaries
from bottleneck_transfer.errors import ExportError

#: Rows per chunk file (and per Parquet row group).
WRITE_ROWS = 8192
#: Output suffix -> format of the files written as they come.
STREAMED_FORMATS = {".csv": "csv", ".parquet": "parquet"}
_META = "meta.json"
_CHUNK = re.compile(r"chunk-(\d{6})-(\d{12})\.(csv|parquet)")


def streamed_format(out: Path) -> str | None:
    """``"csv"`` or ``"parquet"`` when ``out`` is written as it comes, else None."""
    return STREAMED_FORMATS.get(out.suffix.lower())


class PredictionWriter:
    """Rows ``[id, label, class_1, value_1, ...]`` to ``out`` through ``<out>.partial``.

    Parameters
    ----------
    out : Path
        ``.csv`` or ``.parquet``.
    header : list of str
        The column names.
    key : dict
        What identifies the run (model, images, top k): a partial folder of another run is
        refused, never mixed in.
    """

    def __init__(self, out: Path, header: list[str], key: dict[str, Any]) -> None:
        self.out, self.header = Path(out), header
        self.fmt = streamed_format(self.out)
        if self.fmt is None:
            raise ExportError(
                f"predictions are written as they come to .csv or .parquet. Received: out={out}"
            )
        self.folder = Path(f"{self.out}.partial")
        self.meta = {"format": "bottleneck-predictions", "columns": header, "run": key}
        self.rows: list[list] = []
        self.chunks = self._resume()
        self.items_done = self.chunks[-1][1] if self.chunks else 0

    def _resume(self) -> list[tuple[Path, int]]:
        """The chunks a killed run left (numbered without gaps), after checking it is this
        run's folder; creates the folder when there is none."""
        meta_path = self.folder / _META
        if not self.folder.exists():
            self.folder.mkdir(parents=True)
            with atomic_path(meta_path) as tmp:
                tmp.write_text(json.dumps(self.meta))
            return []
        try:
            found = json.loads(meta_path.read_text())
        except (OSError, ValueError) as exc:
            raise ExportError(
                f"{self.folder} is not an unfinished predict of bottleneck ({exc}): move it "
                "away or write to another file"
            ) from exc
        if found != self.meta:
            raise ExportError(
                f"{self.folder} holds predictions of another run (model, images or columns "
                "differ): delete it to start again, or write to another file"
            )
        chunks = []
        for path in sorted(self.folder.iterdir()):
            match = _CHUNK.fullmatch(path.name)
            if match and int(match[1]) == len(chunks) and match[3] == self.fmt:
                chunks.append((path, int(match[2])))
        return chunks

    def add(self, rows: list[list], items_done: int) -> None:
        """Add rows; ``items_done``: the source position after them. Every
        :data:`WRITE_ROWS` rows are committed as a chunk."""
        self.rows += rows
        if len(self.rows) >= WRITE_ROWS:
            self.commit(items_done)

    def commit(self, items_done: int) -> None:
        """Write the rows held as one chunk file (atomically) ending at ``items_done``."""
        if not self.rows and items_done == self.items_done:
            return
        name = f"chunk-{len(self.chunks):06d}-{items_done:012d}.{self.fmt}"
        path = self.folder / name
        with atomic_path(path) as tmp:
            if self.fmt == "csv":
                with open(tmp, "w", newline="", encoding="utf-8") as handle:
                    csv.writer(handle, lineterminator="\n").writerows(self.rows)
            else:
                _parquet().write_table(self._table(self.rows), tmp)
        self.chunks.append((path, items_done))
        self.rows, self.items_done = [], items_done

    def _table(self, rows: list[list]) -> Any:
        """Rows as an Arrow table: strings, and float64 values."""
        import pyarrow as pa

        columns = list(zip(*rows, strict=True)) if rows else [()] * len(self.header)
        arrays = [
            pa.array(column, pa.float64() if i >= 2 and i % 2 else pa.string())
            for i, column in enumerate(columns)
        ]
        return pa.Table.from_arrays(arrays, names=self.header)

    def finish(self, items_done: int) -> Path:
        """Commit the last rows, copy every chunk into ``out`` (one at a time), remove the
        folder; returns ``out``."""
        self.commit(items_done)
        with atomic_path(self.out) as tmp:
            if self.fmt == "csv":
                with open(tmp, "w", newline="", encoding="utf-8") as handle:
                    csv.writer(handle, lineterminator="\n").writerow(self.header)
                    for path, _ in self.chunks:
                        with open(path, encoding="utf-8", newline="") as chunk:
                            handle.write(chunk.read())
            else:
                parquet = _parquet()
                schema = self._table([]).schema
                with parquet.ParquetWriter(tmp, schema) as writer:
                    for path, _ in self.chunks:
                        writer.write_table(parquet.read_table(path, schema=schema))
        self._remove()
        return self.out

    def _remove(self) -> None:
        """Remove the folder: its chunks, temporaries and meta (anything else stays)."""
        for path in list(self.folder.iterdir()):
            if _CHUNK.fullmatch(path.name):
                path.unlink()
            elif path.name.startswith(".") and path.name.endswith(".tmp"):
                final = path.name[1:].rsplit(".", 2)[0]  # .<name>.<random>.tmp
                if _CHUNK.fullmatch(final):  # a chunk a killed run was writing
                    remove_temporaries(self.folder / final)
        remove_temporaries(self.folder / _META)
        (self.folder / _META).unlink()
        if not any(self.folder.iterdir()):
            self.folder.rmdir()


def _parquet() -> Any:
    """``pyarrow.parquet`` (a one-line error naming the install when missing)."""
    from bottleneck_transfer.features.cache import tables

    return tables.require("pyarrow.parquet")
