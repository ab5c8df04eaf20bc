"""The SavedModel export as TF Serving takes it: a version folder, image bytes in.

``-o OUT --format saved-model`` writes ``OUT/1/`` (the next number when ``OUT`` already holds
version folders: TF Serving serves the highest), a SavedModel with two signatures:

``serving_default``
    ``image_bytes``: a string tensor ``[batch]`` of encoded images (JPEG, PNG, GIF, BMP; what
    TF Serving's REST API decodes from ``{"b64": ...}``), each decoded to the base's
    channels and resized by the model's own ``resize`` layer (antialiased bilinear).
``serve``
    ``image``: a uint8 tensor ``[batch, height, width, C]`` (any size; one size per call).

Both give ``probabilities`` (float32 ``[batch, K]``), ``label`` (the top class's name,
string ``[batch]``) and ``label_index`` (its column, int64 ``[batch]``); a binary, multi-label
or regression export gives only its scores, named as its metadata's ``output_names`` say
(``probabilities`` or ``values``). A REST request::

    POST /v1/models/NAME:predict
    {"instances": [{"image_bytes": {"b64": "<base64 of a JPEG>"}}]}
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from bottleneck_transfer.deploy.settings import OUTPUT_NAMES, ExportSettings
from bottleneck_transfer.errors import ExportError

if TYPE_CHECKING:
    import keras

#: The name of the encoded images input of ``serving_default``.
BYTES_INPUT = "image_bytes"


def versions(folder: Path) -> list[int]:
    """The version numbers of ``folder``'s numeric subfolders, ascending."""
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit() and p.is_dir())


def next_version(out: Path) -> Path:
    """Where an export to ``out`` goes: ``out/N``, N one above its highest version (or 1).

    Raises
    ------
    ExportError
        ``out`` exists and holds anything but version folders (and hidden entries).
    """
    if out.is_dir():
        other = [p.name for p in out.iterdir() if not p.name.isdigit() and p.name[0] != "."]
        if other:
            raise ExportError(
                f"{out} exists and is not an export folder bottleneck wrote ({other[0]}: not "
                "a version folder); choose another -o, or remove it yourself"
            )
    return out / str((versions(out) or [0])[-1] + 1)


def newest_version(folder: Path) -> Path | None:
    """The highest-numbered version folder of ``folder`` that holds a SavedModel, or None."""
    found = [folder / str(n) for n in versions(folder)]
    return next((p for p in reversed(found) if (p / "saved_model.pb").is_file()), None)


def write_saved_model(
    model: keras.Model, target: Path, metadata: dict, settings: ExportSettings
) -> None:
    """Write ``model`` as a SavedModel with the ``serving_default`` (bytes) and ``serve``
    (uint8 pixels) signatures."""
    import keras
    import tensorflow as tf

    height, width, channels = metadata["input_shape"]
    classes = tf.constant(metadata["classes"])
    resize = model.get_layer("resize")
    # The layers after the resize, which in a graph gives float32 pixels (not rounded).
    after_resize = keras.Model(resize.output, model.output)

    names = metadata.get("output_names", OUTPUT_NAMES)

    def named(probabilities: Any) -> dict:
        if "label" not in names:  # a binary, multi-label or regression target's scores
            return {names[0]: probabilities}
        index = tf.argmax(probabilities, axis=-1)
        return {
            "probabilities": probabilities,
            "label": tf.gather(classes, index),
            "label_index": index,
        }

    def decode(data: Any) -> Any:
        image = tf.io.decode_image(data, channels=channels, expand_animations=False)
        return tf.cast(resize(image[None])[0], tf.float32)

    def serve_bytes(encoded: Any) -> dict:
        spec = tf.TensorSpec((height, width, channels), tf.float32)
        pixels = tf.map_fn(decode, encoded, fn_output_signature=spec)
        return named(after_resize(pixels, training=False))

    def outputs(images: Any) -> dict:
        return named(model(images, training=False))

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serving_default",
        serve_bytes,
        input_signature=[tf.TensorSpec([None], tf.string, name=BYTES_INPUT)],
    )
    archive.add_endpoint(
        "serve",
        outputs,
        input_signature=[tf.TensorSpec([None, None, None, channels], tf.uint8, name="image")],
    )
    archive.write_out(str(target), verbose=False)
