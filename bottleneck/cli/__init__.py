"""The ``bottleneck`` command line: a thin skin over the library.

Each command module parses options, calls one library function and prints the result.
Errors derived from :class:`~bottleneck_transfer.errors.BottleneckError` become one line on stderr
and exit code 1; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

from bottleneck_transfer.cli.app import cli, main

__all__ = ["cli", "main"]
