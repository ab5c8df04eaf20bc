"""The root ``bottleneck`` command group, error handling and command registration."""

from __future__ import annotations

import contextlib
import sys

import click
from bottleneck_transfer import quiet
from bottleneck_transfer.errors import BottleneckError, Interrupted

#: Exit status after Ctrl-C or SIGTERM (128 + SIGINT), as shells report it.
INTERRUPTED_STATUS = 130


def os_error_line(exc: OSError) -> str:
    """One line for an ``OSError`` that names a file and no library error explained."""
    return (
        f"{exc.filename}: {exc.strerror or exc}; check that path and its permissions "
        "(--debug shows the traceback)"
    )


class _Group(click.Group):
    """A group that turns library errors (and interruptions) into one line and an exit status.

    An ``OSError`` naming a file that no library error explained (the library maps failed
    writes to :class:`~bottleneck_transfer.errors.WriteError` itself) is one line too.
    Unless ``--debug``, the command runs quietly (:mod:`bottleneck_transfer.quiet`): the
    backend's start-up lines muted, warnings summarised at the end.
    """

    def invoke(self, ctx: click.Context):
        with contextlib.ExitStack() as stack:
            if ctx.params.get("debug"):
                quiet.show_backend_logs()
            else:
                quiet.muted_backend_start()
                stack.enter_context(quiet.summarised_warnings())
            return self._invoke(ctx)

    def _invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (BottleneckError, Interrupted, OSError) as exc:
            library = isinstance(exc, (BottleneckError, Interrupted))
            if (ctx.obj and ctx.obj.get("debug")) or not (library or exc.filename):
                raise
            interrupted = isinstance(exc, Interrupted)
            line = str(exc) if library else os_error_line(exc)
            click.echo(f"{'Interrupted' if interrupted else 'Error'}: {line}", err=True)
            ctx.exit(INTERRUPTED_STATUS if interrupted else 1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--debug",
    is_flag=True,
    help="Show full tracebacks on errors, every raw warning and the backend's log lines.",
)
@click.version_option(package_name="bottleneck-transfer")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Transfer learning by cached bottleneck features.

    Extract a frozen base's features once into an HDF5 cache, then train and compare
    heads on the cache in seconds and export the winner as one Keras model.

    \b
    Example:
      bottleneck extract fashion-mnist:train --base data/bases/fashion_mnist_0-4.keras \\
          --classes 5-9 -o caches/fm-train.h5
      bottleneck info caches/fm-train.h5
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def _register() -> None:
    from bottleneck_transfer.cli import (
        bench_cmds,
        deploy_cmds,
        extract_cmds,
        head_cmds,
        pipeline_cmds,
        rank_cmds,
    )

    for module in (extract_cmds, head_cmds, deploy_cmds, pipeline_cmds, rank_cmds, bench_cmds):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def main() -> None:
    """Console-script entry point."""
    sys.exit(cli.main(prog_name="bottleneck", standalone_mode=True))
