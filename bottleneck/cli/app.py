"""The root ``bottleneck`` command group, error handling and command registration."""

from __future__ import annotations

import sys

import click
from bottleneck_transfer.errors import BottleneckError, Interrupted

#: Exit status after Ctrl-C or SIGTERM (128 + SIGINT), as shells report it.
INTERRUPTED_STATUS = 130


class _Group(click.Group):
    """A group that turns library errors (and interruptions) into one line and an exit status."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (BottleneckError, Interrupted) as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            interrupted = isinstance(exc, Interrupted)
            click.echo(f"{'Interrupted' if interrupted else 'Error'}: {exc}", err=True)
            ctx.exit(INTERRUPTED_STATUS if interrupted else 1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
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
    )

    for module in (extract_cmds, head_cmds, deploy_cmds, pipeline_cmds, bench_cmds):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def main() -> None:
    """Console-script entry point."""
    sys.exit(cli.main(prog_name="bottleneck", standalone_mode=True))
