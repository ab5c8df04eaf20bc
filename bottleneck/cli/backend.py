"""Start the Keras backend only for the commands that run a model.

``info``, ``verify``, ``cache`` and every ``--help`` never import Keras, TensorFlow or JAX:
they answer in a fraction of a second. Commands declared with ``cls=ModelCommand`` start
the backend quietly before they run.
"""

from __future__ import annotations

import logging
import os

import click


class ModelCommand(click.Command):
    """A command that may run a model: starts the backend (quietly) before its callback."""

    def invoke(self, ctx: click.Context):
        root = ctx.find_root()
        if not (root.obj and root.obj.get("debug")):
            quiet_backend_start()
        return super().invoke(ctx)


def quiet_backend_start() -> None:
    """Start the Keras backend with its C++ start-up chatter (CUDA probes, oneDNN notes) muted.

    TensorFlow logs these from C++ before any log level applies, so stderr is redirected
    at the file-descriptor level for the import and the first op only.
    """
    logging.getLogger("absl").setLevel(logging.ERROR)
    # tf.function retracing notes (many small head fits in one process) are for developers.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    try:
        saved = os.dup(2)
    except OSError:
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import keras

            keras.ops.convert_to_numpy(keras.ops.zeros((1,)))
    finally:
        os.dup2(saved, 2)
        os.close(saved)
