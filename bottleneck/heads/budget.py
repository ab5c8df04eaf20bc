"""The memory budget of stage 2: whether heads hold the features in memory or stream them.

A cache's features fit when the in-memory path's peak, :data:`IN_MEMORY_FACTOR` times their
float32 bytes (the features, the training rows of a split, working arrays), stays under the
budget; above it every head streams the cache in chunks (:mod:`heads.streaming`). The
budget is ``--memory-budget`` (``"8G"``, ``"512M"``, ``"40%"`` of the machine's memory),
by default :data:`DEFAULT_SHARE` of the machine's physical memory. A :class:`MemoryPlan` says
which path ran, with the budget, the chunk size and the peak memory, for every command's
output and ``--json``.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass

from bottleneck_transfer.errors import HeadError

#: The default budget: this share of the machine's physical memory.
DEFAULT_SHARE = 0.5
#: The in-memory path's peak over the features' float32 bytes, as measured (memray, the
#: features then scaled in place by ``train``): the features once (1); the scaled copy of a
#: split's fitting rows (0.8 for a holdout or 5 folds: scikit-learn's estimators take a
#: matrix, not row indices); a calibrated head's fold copies, made inside scikit-learn's
#: ``CalibratedClassifierCV`` (``cross_val_predict`` fancy-indexes each fold's fitting and
#: held rows: 0.64 + 0.16 of the features). Solvers' working arrays are blocks (MBs).
IN_MEMORY_FACTOR = 2.6
#: A streaming chunk takes at most this share of the budget (several are alive at once:
#: the chunk read, its scaled copy, the solver's working arrays).
CHUNK_SHARE = 1 / 16
#: Bounds of the rows per chunk.
MIN_CHUNK_ROWS, MAX_CHUNK_ROWS = 256, 65_536
#: Values per working block of features in memory (scaling, the linear SVM's float64
#: products): 32 MB as float64, so a block's temporaries stay small beside the features.
BLOCK_VALUES = 2**22
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
PATHS = ("in-memory", "streaming")


def machine_memory() -> int:
    """The machine's physical memory in bytes (POSIX ``sysconf``; 16 GiB where unknown)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):  # Windows
        return 16 * 2**30


def parse_budget(text: str | int | None) -> int:
    """Bytes of a budget: ``"8G"``, ``"512M"``, ``"1.5G"``, ``"40%"`` (of the machine's
    memory), a plain number of bytes, or None for :data:`DEFAULT_SHARE` of the machine's.

    Raises
    ------
    HeadError
        For anything else, with examples.
    """
    if text is None:
        return int(DEFAULT_SHARE * machine_memory())
    if isinstance(text, int):
        value = text
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(%|[KMGT]?)i?B?\s*", str(text).upper())
        if match is None:
            raise HeadError(
                "--memory-budget takes a size such as 8G, 512M or 40% (of the machine's "
                f"memory). Received: memory_budget={text!r}"
            )
        number, unit = float(match[1]), match[2]
        value = int(number / 100 * machine_memory() if unit == "%" else number * _UNITS[unit])
    if value <= 0:
        raise HeadError(f"--memory-budget must be positive. Received: memory_budget={text!r}")
    return value


def chunk_rows(budget: int, dim: int) -> int:
    """Rows per streaming chunk: :data:`CHUNK_SHARE` of the budget in float32 rows, bounded."""
    rows = int(budget * CHUNK_SHARE // (4 * max(dim, 1)))
    return max(MIN_CHUNK_ROWS, min(MAX_CHUNK_ROWS, rows))


def block_rows(dim: int) -> int:
    """Rows per working block of in-memory features of ``dim`` columns
    (:data:`BLOCK_VALUES`, at least one row)."""
    return max(1, BLOCK_VALUES // max(dim, 1))


def peak_memory() -> int | None:
    """This process's peak resident memory in bytes so far (None where not measurable)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


@dataclass
class MemoryPlan:
    """Which path a command takes: in memory, or streaming in chunks of ``chunk_rows``.

    ``feature_bytes``: the features as float32; ``budget``: the budget in bytes; ``forced``:
    streaming was asked for (``--out-of-core``); ``peak_bytes``: the process's peak resident
    memory, set by :meth:`measure` at the end.
    """

    path: str
    budget: int
    chunk_rows: int
    feature_bytes: int
    forced: bool = False
    peak_bytes: int | None = None

    @classmethod
    def choose(
        cls, rows: int, dim: int, budget: str | int | None = None, *, force: bool = False
    ) -> MemoryPlan:
        """The plan for ``rows x dim`` features under ``budget`` (:func:`parse_budget`)."""
        limit = parse_budget(budget)
        feature_bytes = 4 * rows * dim
        streaming = force or IN_MEMORY_FACTOR * feature_bytes > limit
        return cls(
            "streaming" if streaming else "in-memory",
            limit,
            chunk_rows(limit, dim),
            feature_bytes,
            force,
        )

    @property
    def streaming(self) -> bool:
        """Whether the heads stream the cache."""
        return self.path == "streaming"

    def jobs(self, n_jobs: int | None) -> int | None:
        """The worker processes in-memory fits may use: ``n_jobs``, fewer where the budget
        cannot hold each worker's copy of the features (a worker holds up to
        :data:`IN_MEMORY_FACTOR` x the features: their memory map, the rows of its split, its
        copies) beside this process's; streaming fits stay in one process anyway."""
        from joblib import effective_n_jobs

        if self.streaming or not self.feature_bytes:
            return n_jobs
        fits = int(self.budget // (IN_MEMORY_FACTOR * self.feature_bytes)) - 1
        return n_jobs if effective_n_jobs(n_jobs) <= fits else max(fits, 1)

    def measure(self) -> MemoryPlan:
        """Record the peak memory so far; returns self."""
        self.peak_bytes = peak_memory()
        return self

    def to_dict(self) -> dict:
        """JSON-ready: path, budget and feature bytes, chunk rows, peak bytes."""
        return {
            "path": self.path,
            "budget_bytes": self.budget,
            "feature_bytes": self.feature_bytes,
            "chunk_rows": self.chunk_rows if self.streaming else None,
            "forced": self.forced,
            "peak_bytes": self.peak_bytes,
        }

    def line(self) -> str:
        """One line for a command's output (:func:`describe`)."""
        return describe(self.to_dict())


def describe(memory: dict) -> str:
    """The line saying which path ran, from :meth:`MemoryPlan.to_dict`."""
    streaming = memory["path"] == "streaming"
    why = (
        "forced by --out-of-core"
        if memory["forced"]
        else f"{IN_MEMORY_FACTOR:g} x the features' {_size(memory['feature_bytes'])} "
        f"{'exceeds' if streaming else 'fits'} the memory budget {_size(memory['budget_bytes'])}"
    )
    chunks = f", chunks of {memory['chunk_rows']:,} rows" if streaming else ""
    peak = f"; peak memory {_size(memory['peak_bytes'])}" if memory.get("peak_bytes") else ""
    return f"Memory: {memory['path']} ({why}{chunks}){peak}"


def _size(n: int) -> str:
    """Bytes as ``1.03 GB``."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} B"
