"""Base kind ``text-preset``: a KerasHub text backbone (BERT-like encoders, decoder-only
models such as GPT-2) with its own tokenizer and preprocessor.

``--base`` is a preset folder as ``save_to_preset`` writes it (``config.json`` and
``tokenizer.json``: offline), ``keras-hub:NAME`` or an ``hf://``/``kaggle://`` handle
(online, or from KerasHub's download cache). Loading goes through the same preset checks as
an image preset (:mod:`.hub`: the handle, the ``weights`` rule, the classes named in the
folder's configs, one-line errors).

The base's model maps the backbone's int inputs (``token_ids``, ``padding_mask``, and
``segment_ids`` where the family has them) to features; its :class:`TextEncoder` is the
preset's preprocessor (the family's ``TextClassifierPreprocessor``, or a decoder-only
family's ``CausalLMPreprocessor.generate_preprocess``) at ``--max-length`` tokens.

Pooling (``--pooling``): ``cls`` (the first token), ``pooled`` (the backbone's own pooled
output: BERT's), ``mean`` (over non-padding tokens) or ``last-token`` (the last non-padding
token). The default is what KerasHub's own task for the family feeds its head: ``pooled``
where the backbone has a pooled output, else ``cls`` for encoders (also when cut at a
``--layer``), ``last-token`` for decoder-only models; ``info`` shows it (``pooling``,
``pooling_default``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from bottleneck_transfer.errors import BaseModelError
from bottleneck_transfer.features.bases import hub
from bottleneck_transfer.features.bases.common import Base, weights_sha256
from bottleneck_transfer.fingerprint import fingerprint

if TYPE_CHECKING:
    from bottleneck_transfer.features.bases.built import BaseRequest

KIND = "text-preset"
POOLINGS = ("cls", "pooled", "mean", "last-token")
#: None: the family's own (see the module).
DEFAULT_POOLING = None
#: ``--max-length`` when not given: the backbone's longest sequence, at most this.
MAX_LENGTH = 512
TOKENIZER_CONFIG = "tokenizer.json"
#: Poolings that read an encoder's first token (refused for decoder-only models).
FIRST_TOKEN = ("cls", "pooled")


def detect(base: str | Path) -> bool:
    """A preset folder with a tokenizer (``tokenizer.json``), a built-in text preset
    (``keras-hub:NAME``) or a hub handle holding a tokenizer."""
    text = str(base)
    if text.startswith(hub.KERAS_HUB_PREFIX):
        import keras_hub

        return text[len(hub.KERAS_HUB_PREFIX) :] in keras_hub.models.Tokenizer.presets
    if text.startswith(hub.HANDLE_SCHEMES):
        try:
            from keras_hub.src.utils.preset_utils import check_file_exists

            return bool(check_file_exists(text, TOKENIZER_CONFIG))
        except Exception:  # offline, or no such handle: the preset kind says so
            return False
    path = hub.spelled_path(base)
    return (
        path is not None
        and path.is_dir()
        and (path / hub.PRESET_CONFIG).is_file()
        and (path / TOKENIZER_CONFIG).is_file()
    )


@dataclass
class TextEncoder:
    """Texts -> the model's int inputs at ``max_length`` tokens (right-padded), each text's
    token count, and whether it was truncated."""

    preprocess: Any
    tokenizer: Any
    max_length: int
    inputs: tuple[str, ...]
    specials: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        packed = self._packed(["a"])
        self.specials = int(packed["padding_mask"][0].sum()) - self._counts(["a"])[0]

    def _packed(self, texts: list[str]) -> dict[str, np.ndarray]:
        out = self.preprocess(texts)
        return {key: np.asarray(value) for key, value in out.items()}

    def _counts(self, texts: list[str]) -> list[int]:
        tokens = self.tokenizer(texts)
        if hasattr(tokens, "row_lengths"):
            return [int(n) for n in np.asarray(tokens.row_lengths())]
        return [len(row) for row in tokens]

    def encode(self, texts: list[str]) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """``(inputs, lengths, truncated)``: int32 ``(n, max_length)`` per model input,
        tokens per text (specials included), and a bool mask of the truncated texts."""
        packed = self._packed(texts)
        mask = packed["padding_mask"].astype(bool)
        shape = mask.shape
        inputs = {
            key: packed[key].astype(np.int32) if key in packed else np.zeros(shape, np.int32)
            for key in self.inputs
        }
        lengths = mask.sum(axis=1)
        truncated = np.zeros(len(texts), bool)
        full = np.flatnonzero(lengths >= self.max_length)
        if len(full):
            counts = np.asarray(self._counts([texts[k] for k in full]))
            truncated[full] = counts + self.specials > self.max_length
        return inputs, lengths, truncated


@dataclass
class _TextBuilt:
    """A text base before :meth:`base` describes it (what ``load_base`` calls)."""

    model: Any
    encoder: TextEncoder
    name: str
    description: dict

    def base(self, seed: int, preprocess: str | None) -> Base:
        self.model.trainable = False
        description = {**self.description, "weights_sha256": weights_sha256(self.model)}
        size = (self.encoder.max_length, 1)
        return Base(self.model, self.name, size, 1, description, encoder=self.encoder)


def build(base: str | Path, request: BaseRequest) -> _TextBuilt:
    """The preset's text backbone pooled as asked, with its encoder."""
    _refuse_image_options(base, request)
    keras_hub = _keras_hub()
    weights_id = hub.preset_weights(request.weights)
    handle, origin = hub.preset_handle(str(base), keras_hub)
    import keras

    keras.utils.set_random_seed(request.seed)
    try:
        backbone = keras_hub.models.Backbone.from_preset(
            handle, load_weights=weights_id == "preset"
        )
        tokenizer = keras_hub.tokenizers.Tokenizer.from_preset(handle)
    except Exception as exc:
        raise hub.preset_error(str(base), exc) from exc
    length = _max_length(backbone, request.max_length, str(base))
    decoder, preprocess = _preprocessor(keras_hub, handle, length, str(base))
    pooling = request.pooling or _default_pooling(backbone, decoder, request.layer)
    if decoder and pooling in FIRST_TOKEN:
        raise BaseModelError(
            f"--pooling {pooling} reads an encoder's first token; {base} is decoder-only "
            f"(its first token sees only itself). Received: pooling={pooling!r}; use "
            "last-token or mean"
        )
    from bottleneck_transfer.features.bases.text_model import text_model

    model = text_model(backbone, pooling, request.layer, Path(str(base)).name)
    encoder = TextEncoder(preprocess, tokenizer, length, tuple(backbone.input))
    description = {
        **origin,
        "input": "text",
        "preset_class": type(backbone).__name__,
        "preset_config_sha256": fingerprint(
            keras.saving.serialize_keras_object(backbone)["config"]
        ),
        "tokenizer": type(tokenizer).__name__,
        "tokenizer_sha256": _tokenizer_sha256(tokenizer),
        "family": "decoder" if decoder else "encoder",
        "weights": weights_id,
        **({"weights_seed": int(request.seed)} if weights_id == "none" else {}),
        "layer": request.layer or "last",
        "pooling": pooling,
        "pooling_default": request.pooling is None,
        "max_length": length,
        "feature_dim": int(model.output_shape[-1]),
    }
    return _TextBuilt(model, encoder, Path(str(base)).name, description)


def _keras_hub() -> Any:
    from bottleneck_transfer.features.cache.tables import require

    return require("keras_hub", "hub")


def _refuse_image_options(base: str | Path, request: BaseRequest) -> None:
    """One line for an image option given with a text base."""
    given = {"image_size": request.size, "preprocess": request.preprocess}
    named = {k: v for k, v in given.items() if v is not None}
    if named:
        received = ", ".join(f"{k}={v!r}" for k, v in named.items())
        raise BaseModelError(
            f"{base} is a text base: --image-size and --preprocess apply to images (its "
            f"tokenizer is its preprocessing; --max-length sets its length). Received: {received}"
        )


def _max_length(backbone: Any, asked: int | None, base: str) -> int:
    """``asked``, or the backbone's longest sequence (at most :data:`MAX_LENGTH`)."""
    longest = backbone.get_config().get("max_sequence_length")
    if asked is None:
        return int(min(longest or MAX_LENGTH, MAX_LENGTH))
    if longest is not None and asked > longest:
        raise BaseModelError(
            f"{base} takes at most {longest} tokens. Received: max_length={asked}; "
            f"give --max-length {longest} or less"
        )
    return int(asked)


def _preprocessor(keras_hub: Any, handle: str, length: int, base: str) -> tuple[bool, Any]:
    """Whether the family is decoder-only, and its preprocessing call (texts -> inputs)."""
    try:
        found = keras_hub.models.TextClassifierPreprocessor.from_preset(
            handle, sequence_length=length
        )
        return False, found
    except ValueError:
        pass
    try:
        found = keras_hub.models.CausalLMPreprocessor.from_preset(handle, sequence_length=length)
    except ValueError as exc:
        raise BaseModelError(
            f"{base} has no text preprocessor KerasHub knows (neither a text classifier's nor a "
            f"causal LM's): {hub.one_line(exc)}; give a text model's preset"
        ) from exc
    return True, found.generate_preprocess


def _default_pooling(backbone: Any, decoder: bool, layer: str | None) -> str:
    """What KerasHub's own task for the family feeds its head (see the module); ``cls`` for
    an encoder cut at a ``layer`` (no pooled output there)."""
    if decoder:
        return "last-token"
    outputs = backbone.output
    pooled = layer is None and isinstance(outputs, dict) and "pooled_output" in outputs
    return "pooled" if pooled else "cls"


def _tokenizer_sha256(tokenizer: Any) -> str:
    """The tokenizer's configuration, vocabulary and merges (BPE), hashed."""
    return fingerprint(
        {
            "config": tokenizer.get_config(),
            "vocabulary": list(tokenizer.get_vocabulary()),
            "merges": list(getattr(tokenizer, "merges", None) or []),
        }
    )


def rebuild_spec(
    described: dict, base_path: str | Path | None, weights: str | Path | None, cache_path: Path
) -> tuple[str | Path, list[str | None]] | None:
    """The text preset a cache's provenance names (:func:`.hub.rebuild_spec`), else None."""
    if described.get("input") != "text":
        return None
    return hub.rebuild_spec(described, base_path, weights, cache_path)
