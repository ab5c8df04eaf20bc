"""Starting the Keras backend without its C++ start-up chatter (CUDA probes, oneDNN notes).

The CLI starts it so before a command that runs a model; compare's worker processes start it
so before their first fit.
"""

from __future__ import annotations

import functools
import logging
import os


@functools.cache
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
