"""The ``onnx`` runtime: the Keras model converted once to ONNX, run by ONNX Runtime.

**Conversion** (:func:`convert`): Keras' own ``model.export(format="onnx")`` at opset
:data:`OPSET`, of the model taking uint8 pixels (:func:`features.runtimes.pixel_model`: the
cast is inside the graph). On the TensorFlow backend Keras runs tf2onnx
(``tf2onnx.convert.from_function`` on the traced call, after Keras' NumPy 2 patch of
tf2onnx); on torch, ``torch.onnx`` (which needs onnxscript, not installed here and not
needed on TensorFlow). Keras' call is the public, backend-agnostic path; calling tf2onnx
directly would repeat Keras' tracing and patch, for one backend only.

**Store**: the graph is kept in ``<store>/runtimes/<32 hex>/`` (``model.onnx`` and
``conversion.json``: versions, opset, parity), keyed by :func:`graph_identity` (the base's
description, the weights' hash, the outputs, the converter's versions and the opset),
written by one atomic rename with its manifest, whose hashes are checked on reuse.

**Parity**: before it is stored, the graph and the Keras model run on a seeded probe batch of
:data:`PROBE_IMAGES` images; the relative difference max|a-b|/max|b| (the worst output) must
be at most :data:`TOLERANCE`, else :class:`~bottleneck_transfer.errors.BaseModelError` with
the figure. So the runtime never enters a cache's fingerprint: its features are Keras' to
that tolerance.

An ONNX file base (:mod:`features.bases.onnx_file`) is not converted: its feature graph is
stored as it is (no parity to check) and run the same way.

**Trust**: every graph passes :func:`graphs.check_onnx` (standard operator domains only)
before a session opens, unless ``--trust-graph``.

**Session** (:func:`session_options`): graph optimisation ``ORT_ENABLE_ALL``, sequential
execution, intra-op threads from the run context (the cores; see
:func:`features.runners.model_threads`), one inter-op thread, no spinning (idle pool threads
sleep instead of taking decoding's cores); the CPU provider, after the matching accelerator
provider (CUDA, ROCm) when the Keras backend sees an accelerator and ONNX Runtime has one.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from bottleneck_transfer.atomic import atomic_path
from bottleneck_transfer.entries import reusable
from bottleneck_transfer.errors import BaseModelError, MissingDependencyError
from bottleneck_transfer.features.bases.common import weights_sha256
from bottleneck_transfer.features.bases.onnx_graph import OnnxGraph
from bottleneck_transfer.features.runtimes import pixel_model
from bottleneck_transfer.features.store import CacheStore
from bottleneck_transfer.fingerprint import fingerprint
from bottleneck_transfer.graphs import check_onnx

if TYPE_CHECKING:
    import keras
    import onnxruntime
    from bottleneck_transfer.features.runners.base import RunContext
    from bottleneck_transfer.features.runtimes import Pass

#: The ONNX opset graphs are converted at.
OPSET = 17
#: The largest relative difference max|a-b|/max|b| between the graph's and Keras' outputs.
TOLERANCE = 1e-4
#: Images of the seeded probe batch the parity check runs.
PROBE_IMAGES = 4
#: The files of a stored conversion.
GRAPH_FILE, RECORD_FILE = "model.onnx", "conversion.json"
#: ONNX Runtime's execution providers for an accelerator, preferred in this order.
ACCELERATOR_PROVIDERS = ("CUDAExecutionProvider", "ROCMExecutionProvider")


def _require() -> None:
    """Raise a one-line :class:`MissingDependencyError` unless onnx and onnxruntime import."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(
            f"--runtime onnx needs onnx and onnxruntime ({exc.name} is missing): "
            "pip install 'bottleneck-transfer[onnx]', or use --runtime keras"
        ) from exc


def converter_versions() -> dict[str, str]:
    """The versions that make a conversion: Keras, its backend, and tf2onnx on TensorFlow."""
    import keras

    versions = {"keras": keras.__version__, "backend": keras.backend.backend()}
    if versions["backend"] == "tensorflow":
        try:
            import tf2onnx
        except ImportError:  # no conversion: the runtime says so when opened
            versions["tf2onnx"] = "missing"
        else:
            versions["tf2onnx"] = tf2onnx.__version__
    return versions


def graph_identity(job: Pass) -> dict[str, Any]:
    """What the converted graph of ``job``'s model depends on (its store key's content)."""
    model = job.runner.model
    return {
        "base": job.runner.description,
        "weights_sha256": weights_sha256(model),
        "outputs": [[name, list(shape)] for name, shape in _outputs(model)],
        "opset": OPSET,
        "converter": converter_versions(),
    }


def _outputs(model: keras.Model) -> list[tuple[str, tuple]]:
    shapes = model.output_shape if isinstance(model.output_shape, list) else [model.output_shape]
    return list(zip(model.output_names, shapes, strict=True))


def probe_pixels(job: Pass, n: int, seed: int = 0) -> np.ndarray:
    """``n`` seeded random uint8 images of ``job``'s input size."""
    height, width = job.runner.image_size
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, height, width, job.runner.channels), dtype=np.uint8)


def relative_difference(got: list[np.ndarray], want: list[np.ndarray]) -> float:
    """The worst output's max|got - want| / max|want| (0 where both are all zero)."""
    worst = 0.0
    for a, b in zip(got, want, strict=True):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        if a.shape != b.shape:
            return float("inf")
        scale = float(np.abs(b).max(initial=0.0))
        diff = float(np.abs(a - b).max(initial=0.0))
        worst = max(worst, diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf")))
    return worst


def _export(model: keras.Model, path: Path) -> None:
    """Write ``model`` as ONNX to ``path`` (Keras' exporter at :data:`OPSET`)."""
    with warnings.catch_warnings():  # Keras' NumPy 2 patch of tf2onnx probes np.object
        warnings.filterwarnings("ignore", message=".*np.object.*", category=FutureWarning)
        model.export(str(path), format="onnx", verbose=False, opset_version=OPSET)


def _as_list(out: Any) -> list[np.ndarray]:
    import keras

    outs = out if isinstance(out, (list, tuple)) else [out]
    return [np.asarray(keras.ops.convert_to_numpy(o), np.float32) for o in outs]


def convert(job: Pass, folder: Path, context: RunContext) -> dict:
    """Convert ``job``'s model into ``folder`` (one atomic write), parity checked; its record.

    Raises
    ------
    BaseModelError
        The model does not convert, or the graph's outputs differ from Keras' by more than
        :data:`TOLERANCE` (the figure in the message): nothing is stored.
    """
    name = job.runner.name
    if isinstance(job.runner.model, OnnxGraph):  # an ONNX base: its own graph, no conversion
        return _store_graph(job.runner.model, folder)
    model = pixel_model(job.runner.model) or job.runner.model
    probe = probe_pixels(job, PROBE_IMAGES)
    if model is job.runner.model:
        probe = probe.astype(np.float32)
    want = _as_list(model.predict_on_batch(probe))  # also what Keras' exporter needs: a call
    with atomic_path(folder) as tmp:
        tmp.mkdir()
        try:
            _export(model, tmp / GRAPH_FILE)
        except Exception as exc:  # any converter failure: the runtime is unavailable
            first = (str(exc).splitlines() or [""])[0][:200]
            raise BaseModelError(
                f"--runtime onnx: {name} does not convert to ONNX ({type(exc).__name__}: "
                f"{first}); use --runtime keras"
            ) from exc
        got = OnnxRunner(open_session(tmp / GRAPH_FILE, context), {})._outputs(probe)
        difference = relative_difference(got, want)
        if not difference <= TOLERANCE:
            raise BaseModelError(
                f"--runtime onnx: the ONNX conversion of {name} differs from Keras by "
                f"{difference:.3g} (max|a-b|/max|b| on {PROBE_IMAGES} probe images; at most "
                f"{TOLERANCE:g} allowed): use --runtime keras"
            )
        record = {
            "parity": difference,
            "probe_images": PROBE_IMAGES,
            "opset": OPSET,
            "converter": converter_versions(),
            "input": str(probe.dtype),
        }
        (tmp / RECORD_FILE).write_text(json.dumps(record, indent=1), encoding="utf-8")
    return record


def _store_graph(graph: OnnxGraph, folder: Path) -> dict:
    """Write an ONNX base's feature graph into ``folder`` (one atomic write); its record."""
    record = {"source": "onnx file", "input": "float32"}
    with atomic_path(folder) as tmp:
        tmp.mkdir()
        (tmp / GRAPH_FILE).write_bytes(graph.proto)
        (tmp / RECORD_FILE).write_text(json.dumps(record, indent=1), encoding="utf-8")
    return record


def converted(job: Pass, context: RunContext) -> tuple[Path, dict]:
    """The stored graph of ``job``'s model (converted first when not stored) and its record."""
    if job.runner.description.get("compute_dtype", "float32") != "float32":
        raise BaseModelError(
            "--runtime onnx runs the base in float32: drop --compute-dtype or use --runtime keras"
        )
    folder = context.store / fingerprint(graph_identity(job)).split(":", 1)[-1][:32]
    if reusable(folder, "ONNX graph"):
        CacheStore.touch(folder)  # its last use, for `cache prune --older-than`
        record = json.loads((folder / RECORD_FILE).read_text(encoding="utf-8"))
    else:
        record = convert(job, folder, context)
    return folder / GRAPH_FILE, record


def accelerator_provider() -> str | None:
    """ONNX Runtime's execution provider for an accelerator, if it has one."""
    import onnxruntime

    available = onnxruntime.get_available_providers()
    return next((p for p in ACCELERATOR_PROVIDERS if p in available), None)


def session_options(threads: int) -> onnxruntime.SessionOptions:
    """The session options this runtime uses (see the module's docstring)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


def open_session(path: Path, context: RunContext) -> onnxruntime.InferenceSession:
    """An ONNX Runtime session of the graph at ``path``, its ops checked first."""
    import onnxruntime

    check_onnx(path, trusted=context.trusted)
    providers = ["CPUExecutionProvider"]
    accelerator = accelerator_provider() if context.accelerator else None
    if accelerator:
        providers.insert(0, accelerator)
    return onnxruntime.InferenceSession(
        str(path), sess_options=session_options(context.threads), providers=providers
    )


class OnnxRunner:
    """Runs an ONNX Runtime session on batches of pixels (cast to the graph's input type)."""

    name = "onnx"

    def __init__(self, session: onnxruntime.InferenceSession, record: dict) -> None:
        self.session = session
        self.record = record
        graph_input = session.get_inputs()[0]
        self._input = graph_input.name
        self._dtype = np.uint8 if graph_input.type == "tensor(uint8)" else np.float32
        self._dims = [int(o.shape[-1]) for o in session.get_outputs()]

    def _outputs(self, pixels: np.ndarray) -> list[np.ndarray]:
        if len(pixels) == 0:
            return [np.zeros((0, d), np.float32) for d in self._dims]
        feed = {self._input: np.ascontiguousarray(pixels, dtype=self._dtype)}
        return [np.asarray(o, np.float32) for o in self.session.run(None, feed)]

    def __call__(self, pixels: np.ndarray) -> np.ndarray | list[np.ndarray]:
        """The graph's float32 outputs: an array, or a list for several outputs."""
        out = self._outputs(pixels)
        return out if len(out) > 1 else out[0]

    @property
    def provenance(self) -> dict:
        import onnxruntime

        options = self.session.get_session_options()
        return {
            "name": self.name,
            "onnxruntime": onnxruntime.__version__,
            "providers": self.session.get_providers(),
            "intra_op_threads": options.intra_op_num_threads,
            "graph_optimization": "ORT_ENABLE_ALL",
            **self.record,
        }


def open(job: Pass, batch_size: int, context: RunContext) -> OnnxRunner:
    """The ONNX Runtime runner of ``job``'s model: converted (or read from the store), checked,
    in a session with :func:`session_options`."""
    _require()
    path, record = converted(job, context)
    return OnnxRunner(open_session(path, context), record)
