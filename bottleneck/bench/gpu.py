"""Both runtimes on an accelerator (issue 28, part 5): run it when a GPU is available.

``python -m bottleneck_transfer.bench.gpu [--bases mobilenet_v2,resnet50] [--json FILE]``
measures, per base at 224 x 224 (random weights) and batch 256 (the accelerator batch):

* ``model``: R_model of Keras on the accelerator and of ONNX Runtime with each accelerator
  execution provider it has (``CUDAExecutionProvider``, ``TensorrtExecutionProvider``; the
  CPU provider as the reference): ``batch / median seconds of one call`` after a warm call,
  the runners taking turns (:func:`bench.runtimes.model_rates`);
* ``decode``: R_decode on all cores, and ``limit``: L = min(R_model, R_decode) per runtime
  (with an accelerator the model and decoding overlap: the design's performance section);
* ``extract``: :func:`features.extract.extract` end to end with ``--runtime keras``,
  ``onnx`` (its accelerator provider) and ``auto``, marginal rates over two sizes
  (:func:`bench.runtimes.marginal_rates`), and their ratios to L.

It writes the JSON (machine, GPU name, versions, figures) to ``--json`` (default
``data/bench/gpu.json``) for the README. Without an accelerator it says so in one line and
exits with status 2: the tests never need it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

#: ONNX Runtime's accelerator execution providers this benchmark measures, if installed.
PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "ROCMExecutionProvider")
DEFAULT_JSON = Path(__file__).resolve().parents[2] / "data" / "bench" / "gpu.json"


def gpu_name() -> str | None:
    """The accelerator's name as ``nvidia-smi`` gives it (None without one)."""
    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def _onnx_runners(job: Any, batch_size: int, context: Any) -> dict[str, Any]:
    """One ONNX Runtime runner per execution provider installed (and the CPU one)."""
    import onnxruntime
    from bottleneck_transfer.features.runners import onnx as onnx_runtime

    path, record = onnx_runtime.converted(job, context)
    available = onnxruntime.get_available_providers()
    runners = {}
    for provider in [p for p in PROVIDERS if p in available] + ["CPUExecutionProvider"]:
        options: dict[str, Any] = {}
        if provider == "TensorrtExecutionProvider":
            cache = Path(tempfile.gettempdir()) / "bottleneck-trt"
            options = {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache)}
        session = onnxruntime.InferenceSession(
            str(path),
            sess_options=onnx_runtime.session_options(context.threads),
            providers=[(provider, options), "CPUExecutionProvider"],
        )
        name = "onnx_" + provider.removesuffix("ExecutionProvider").lower()
        runners[name] = onnx_runtime.OnnxRunner(session, record)
    return runners


def bench_gpu(base: str, *, image_size: int = 224, batch_size: int = 256, repeats: int = 3) -> dict:
    """The figures of the module docstring for ``base``."""
    from dataclasses import replace

    from bottleneck_transfer.bench.runtimes import end_to_end, marginal_rates, model_rates
    from bottleneck_transfer.bench.suite import decode_source, limit_rate, photo_folder
    from bottleneck_transfer.features.runners import make_context
    from bottleneck_transfer.features.runners.keras import KerasRunner
    from bottleneck_transfer.features.runtimes import load_pass
    from bottleneck_transfer.features.sources import open_source

    sizes = (batch_size, 4 * batch_size)
    job = load_pass(base, weights="none", image_size=image_size)
    context = make_context()
    source = open_source(photo_folder(max(sizes)))
    pixels = decode_source(source, job.runner, context.threads, batch_size)[:batch_size]
    runners = {"keras": KerasRunner(job.runner.model, batch_size)}
    runners.update(_onnx_runners(job, batch_size, context))
    model, _ = model_rates(runners, pixels, 2 * repeats)
    decode = marginal_rates(
        {
            "decode": lambda n: decode_source(
                replace(source, items=source.items[:n]), job.runner, context.threads, batch_size
            )
        },
        sizes,
        repeats,
    )["decode"]["rate"]
    limits = {name: limit_rate(rate, decode, True) for name, rate in model.items()}
    extracted, auto = end_to_end(job, source, batch_size, repeats, sizes)
    extract = {name: figures["rate"] for name, figures in extracted.items()}
    onnx_provider = next((n for n in runners if n not in ("keras", "onnx_cpu")), "onnx_cpu")
    return {
        "base": base,
        "image_size": image_size,
        "batch_size": batch_size,
        "accelerator": context.accelerator,
        "model": {k: round(v, 1) for k, v in model.items()},
        "decode": round(decode, 1),
        "limit": {k: round(v, 1) for k, v in limits.items()},
        "extract": {k: round(v, 1) for k, v in extract.items()},
        "auto_choice": auto["name"],
        "auto_probe": auto.get("probe", {}).get("rates"),
        "extract_over_limit": {
            "keras": round(extract["keras"] / limits["keras"], 3),
            "onnx": round(extract["onnx"] / limits[onnx_provider], 3),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bases", default="mobilenet_v2,resnet50")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args(argv)
    from bottleneck_transfer.bench.suite import _machine
    from bottleneck_transfer.features.runtimes import accelerator_devices

    if not accelerator_devices():
        print(
            "bench.gpu: the Keras backend sees no accelerator here; run it on a GPU machine",
            file=sys.stderr,
        )
        return 2
    if not os.environ.get("BOTTLENECK_CACHE_DIR"):
        os.environ["BOTTLENECK_CACHE_DIR"] = tempfile.mkdtemp(prefix="bottleneck-gpu-")
    report: dict[str, Any] = {"machine": {**_machine(os.cpu_count() or 1), "gpu": gpu_name()}}
    report["results"] = []
    for base in args.bases.split(","):
        entry = bench_gpu(
            base, image_size=args.image_size, batch_size=args.batch_size, repeats=args.repeats
        )
        report["results"].append(entry)
        print(json.dumps(entry), flush=True)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
