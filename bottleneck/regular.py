"""Only regular files are opened: a FIFO, socket or device is never read.

Opening a FIFO for reading blocks until someone writes to it, a device can be endless: a
path the package opens (a store entry, an image, a manifest, an ``-o`` target) is checked
here first, by its ``stat``, without opening it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from bottleneck_transfer.errors import BottleneckError

_KINDS = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFDIR: "a folder",
    stat.S_IFLNK: "a symbolic link",
}


def file_kind(path: str | Path, *, follow: bool = False) -> str | None:
    """What ``path`` is when it is not a regular file (``"a FIFO (named pipe)"``, ...).

    Parameters
    ----------
    path : str or Path
        The path; never opened.
    follow : bool
        Judge what a symbolic link points to (inputs a user names) rather than the link
        itself (the store, which never follows links).

    Returns
    -------
    str or None
        None for a regular file; ``"missing"`` when there is nothing (or nothing readable).
    """
    try:
        mode = (os.stat if follow else os.lstat)(path).st_mode
    except OSError:
        return "missing"
    if stat.S_ISREG(mode):
        return None
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def is_regular(path: str | Path, *, follow: bool = False) -> bool:
    """Whether ``path`` is a regular file (see :func:`file_kind`); it is never opened."""
    return file_kind(path, follow=follow) is None


def require_regular(path: str | Path, what: str = "file", *, follow: bool = True) -> Path:
    """``path``, or a one-line :class:`BottleneckError` when it is not a regular file.

    Examples
    --------
    >>> require_regular("/dev/null", "--manifest")  # doctest: +SKIP
    BottleneckError: --manifest /dev/null is a character device, not a regular file: ...
    """
    kind = file_kind(path, follow=follow)
    if kind == "missing":
        raise BottleneckError(f"{what} {path} does not exist: check the path")
    if kind is not None:
        raise BottleneckError(
            f"{what} {path} is {kind}, not a regular file: bottleneck never opens one; "
            "give a regular file"
        )
    return Path(path)
