"""Exceptions and warnings. Every error says what went wrong and what to do about it."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable


class BottleneckError(Exception):
    """Base class: the CLI prints these as one line and exits non-zero, without a traceback."""


class ImageError(BottleneckError):
    """An image could not be decoded (missing, empty, truncated, not an image, too large)."""


class SourceError(BottleneckError):
    """An image collection could not be read (missing path, bad manifest, no images)."""


class BaseModelError(BottleneckError):
    """A base model could not be built or loaded (unknown name, bad layer, offline weights)."""


class CacheError(BottleneckError):
    """A feature cache is missing, incomplete, malformed, or locked by another writer."""


class StaleCacheError(CacheError):
    """A cache exists for different inputs (base, weights, size, layer or images)."""


class HeadError(BottleneckError):
    """A head cannot be trained or used on the given data."""


class ExportError(BottleneckError):
    """A model cannot be exported, or a file is not a usable bottleneck export."""


class GraphError(BottleneckError):
    """A model's graph (SavedModel, TFLite, ONNX) holds an op this tool does not run without
    ``--trust-graph``, or cannot be read to be checked."""


class WriteError(BottleneckError, OSError):
    """A file or folder could not be written (no permission, a read-only or full disk, a file
    size limit, a file where a folder is expected); nothing was left under its final name.

    An ``OSError`` too, with the ``errno`` and ``strerror`` of the failure it reports.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else super().__str__()


class MissingDependencyError(BottleneckError, ImportError):
    """An optional dependency (pyarrow, ...) is needed and not installed; says how to install it."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a command; the message says what was kept and how to go on.

    A ``KeyboardInterrupt`` (so ``except Exception`` does not swallow it); the CLI prints it
    as one line and exits with status 130.
    """


class BottleneckWarning(UserWarning):
    """Base class of the warnings this package emits."""


class SkippedImageWarning(BottleneckWarning):
    """An image was skipped during extraction or prediction."""


class TruncatedTextWarning(BottleneckWarning):
    """Texts longer than a text base's ``max_length`` were truncated (and counted)."""


class SmallDataWarning(BottleneckWarning):
    """Too few samples per class, or a strong imbalance, for a trustworthy comparison."""


class DuplicateImagesWarning(BottleneckWarning):
    """A cache holds copies of one picture (kept on one side of every split)."""


class ResumeWarning(BottleneckWarning):
    """Part of an unfinished extraction was damaged or missing; those items are redone."""


class StoreEntryWarning(BottleneckWarning):
    """A stored entry (cache, fit, predictions, export) failed its checksums or has none:
    it is not used, but computed again and rewritten."""


def did_you_mean(
    name: str, choices: Iterable[str], *, key: Callable[[str], str] | None = None
) -> str:
    """``" Did you mean 'x'?"`` for the closest of ``choices`` to ``name``, else ``""``.

    ``key`` normalises both sides before they are compared (e.g. case and punctuation).
    """
    key = key or (lambda text: text)
    shown = {key(choice): choice for choice in choices}
    close = difflib.get_close_matches(key(name), list(shown), n=1)
    return f" Did you mean {shown[close[0]]!r}?" if close else ""
