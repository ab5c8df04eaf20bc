"""Start the Keras backend only for the commands that run a model.

``info``, ``verify``, ``cache`` and every ``--help`` never import Keras, TensorFlow or JAX:
they answer in a fraction of a second. Commands declared with ``cls=ModelCommand`` start
the backend quietly before they run.
"""

from __future__ import annotations

import click
from bottleneck_transfer.backend import quiet_backend_start


class ModelCommand(click.Command):
    """A command that may run a model: starts the backend (quietly) before its callback."""

    def invoke(self, ctx: click.Context):
        root = ctx.find_root()
        if not (root.obj and root.obj.get("debug")):
            quiet_backend_start()
        return super().invoke(ctx)
