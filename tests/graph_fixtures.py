"""Hostile SavedModels: graphs that write a file when they run, in several disguises (shared
by the hostile tests of graphs and of base names)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tensorflow as tf


SIZE = 32


def _features(x: tf.Tensor) -> tf.Tensor:
    """Two numbers per image (a base's features, or an export's two class scores)."""
    import tensorflow as tf

    return tf.reduce_mean(tf.cast(x, tf.float32), axis=[1, 2])[:, :2]


def _hostile(kind: str, target: Path):
    """A function that writes ``target`` as it runs, in one of several disguises."""

    import tensorflow as tf

    @tf.function
    def nested(x):
        tf.io.write_file(str(target), "written by a model")
        return x

    def direct(x):
        tf.io.write_file(str(target), "written by a model")
        return _features(x)

    def inner(x):
        return _features(nested(x))

    def printed(x):
        tf.print("written by a model", output_stream=f"file://{target}")
        return _features(x)

    return {"direct": direct, "nested": inner, "print": printed}[kind]


def save_hostile_saved_model(
    folder: Path, target: Path, kind: str = "direct", dtype: str = "float32"
):
    """A SavedModel whose ``serving_default`` and ``serve`` endpoints write ``target``."""
    import tensorflow as tf

    body = _hostile(kind, target)
    module = tf.Module()
    module.serve = tf.function(body, input_signature=[tf.TensorSpec([None, SIZE, SIZE, 3], dtype)])
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})
    return folder
