"""Benchmark of issue 28's runtimes: Keras against ONNX Runtime, and what ``auto`` picks.

``python -m bottleneck_transfer.bench.runtimes [--bases mobilenet_v2,resnet50]`` prints one
JSON line per base as it finishes (the machine first; a table on stderr), so a run stopped
early keeps the bases done. For each base at 224 x 224 (random weights), in one run:

* ``model``: R_model of each runtime, its runner on preloaded uint8 pixels (what the loop
  calls), as a marginal rate: ``(n_large - n_small) / (t_large - t_small)``, so start-up
  and the first call cancel; ONNX Runtime also with one intra-op thread fewer.
* ``decode``: R_decode, the extractor's decoding and resizing on all cores (marginal too).
* ``limit``: L = 1 / (1/R_model + 1/R_decode) per runtime (the design's performance section).
* ``extract``: :func:`features.extract.extract` end to end with ``runtime`` keras, onnx and
  auto (marginal: two source sizes, so loading the base, the store look-ups and the session
  cancel; the conversion and auto's probe are made beforehand, they are stored once).
* ratios: onnx/keras model and end to end, end to end / L of the faster runtime, auto / the
  faster runtime's end-to-end rate; the ONNX Runtime session settings used.

The converted graphs and probes go to the store (``$BOTTLENECK_CACHE_DIR`` or a temporary
folder); the conversion's seconds are reported (once per base, then read back). Nothing here
asserts a time; on a shared machine the figures are indicative (``load_average`` is
recorded).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

#: Images of the small and large runs whose difference gives a marginal rate.
SIZES = (64, 192)


def _marginal(seconds: dict[int, float]) -> float:
    (small, t_small), (large, t_large) = sorted(seconds.items())
    return (large - small) / max(t_large - t_small, 1e-9)


def _timed(function: Any) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def _model_rate(runner: Any, pixels: np.ndarray, batch_size: int) -> float:
    def run(n: int) -> None:
        for begin in range(0, n, batch_size):
            runner(pixels[begin : begin + batch_size])

    runner(pixels[:batch_size])  # warm: trace, compile, allocate
    return _marginal({n: _timed(lambda n=n: run(n)) for n in SIZES})


def bench_runtimes(base: str, *, image_size: int = 224, batch_size: int = 64) -> dict[str, Any]:
    """The figures of the module docstring for ``base`` (random weights)."""
    from bottleneck_transfer.bench.suite import decode_source, limit_rate, photo_folder
    from bottleneck_transfer.features.extract import extract
    from bottleneck_transfer.features.runners import make_context, model_threads
    from bottleneck_transfer.features.runners import onnx as onnx_runtime
    from bottleneck_transfer.features.runners.keras import KerasRunner
    from bottleneck_transfer.features.runtimes import load_pass
    from bottleneck_transfer.features.sources import open_source

    settings = {"weights": "none", "image_size": image_size}
    job = load_pass(base, **settings)
    context = make_context()
    source = open_source(photo_folder(max(SIZES)))
    pixels = decode_source(source, job.runner, context.threads, batch_size)
    entry: dict[str, Any] = {"base": base, "image_size": image_size, "batch_size": batch_size}
    started = time.perf_counter()
    onnx_runner = onnx_runtime.open(job, batch_size, context)
    entry["onnx_open_seconds"] = round(time.perf_counter() - started, 1)  # conversion if new
    entry["onnx_session"] = onnx_runner.provenance
    fewer = replace(context, threads=max(1, context.threads - 1))
    runners = {
        "keras": KerasRunner(job.runner.model, batch_size),
        "onnx": onnx_runner,
        f"onnx_threads_{fewer.threads}": onnx_runtime.open(job, batch_size, fewer),
    }
    model = {name: _model_rate(r, pixels, batch_size) for name, r in runners.items()}
    decode = _marginal(
        {
            n: _timed(
                lambda n=n: decode_source(
                    replace(source, items=source.items[:n]), job.runner, context.threads, batch_size
                )
            )
            for n in SIZES
        }
    )
    limits = {name: limit_rate(model[name], decode, False) for name in ("keras", "onnx")}

    def run_extract(runtime: str, n: int, out: Path) -> float:
        part = replace(source, items=source.items[:n])
        return _timed(
            lambda: extract(
                part,
                base,
                out,
                runtime=runtime,
                batch_size=batch_size,
                progress=False,
                force=True,
                **settings,
            )
        )

    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "c.h5"
        end_to_end = {}
        for runtime in ("keras", "onnx", "auto"):
            run_extract(runtime, batch_size, out)  # warm: auto probes (stored) here
            end_to_end[runtime] = _marginal({n: run_extract(runtime, n, out) for n in SIZES})
        from bottleneck_transfer.features.cache import FeatureCache

        with FeatureCache.open(out) as cache:
            auto = cache.provenance["extraction"]["runtime"]
    faster = max(("keras", "onnx"), key=lambda name: end_to_end[name])
    entry.update(
        model={k: round(v, 1) for k, v in model.items()},
        decode=round(decode, 1),
        limit={k: round(v, 1) for k, v in limits.items()},
        extract={k: round(v, 1) for k, v in end_to_end.items()},
        auto_choice=auto["name"],
        auto_probe=auto.get("probe", {}).get("rates"),
        ratios={
            "model_onnx_over_keras": round(model["onnx"] / model["keras"], 3),
            "extract_onnx_over_keras": round(end_to_end["onnx"] / end_to_end["keras"], 3),
            "limit_onnx_over_keras": round(limits["onnx"] / limits["keras"], 3),
            "extract_over_limit_of_faster": round(
                max(end_to_end["keras"], end_to_end["onnx"]) / max(limits.values()), 3
            ),
            "auto_over_faster": round(end_to_end["auto"] / end_to_end[faster], 3),
        },
    )
    entry["threads"] = {"model_threads": model_threads(), "decode_workers": context.threads}
    return entry


def _table(entries: list[dict]) -> str:
    lines = [
        "base          runtime  model/s  L/s     extract/s",
        *(
            f"{e['base']:<13} {rt:<8} {e['model'][rt]:>7} {e['limit'][rt]:>7} {e['extract'][rt]:>9}"
            for e in entries
            for rt in ("keras", "onnx")
        ),
    ]
    for e in entries:
        lines.append(
            f"{e['base']}: decode {e['decode']}/s; auto -> {e['auto_choice']} "
            f"({e['extract']['auto']}/s); ratios {json.dumps(e['ratios'])}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bases", default="mobilenet_v2,resnet50")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)
    from bottleneck_transfer.bench.suite import _machine

    if not os.environ.get("BOTTLENECK_CACHE_DIR"):
        os.environ["BOTTLENECK_CACHE_DIR"] = tempfile.mkdtemp(prefix="bottleneck-runtimes-")
    print(json.dumps({"machine": _machine(os.cpu_count() or 1)}), flush=True)
    for base in args.bases.split(","):
        entry = bench_runtimes(base, image_size=args.image_size, batch_size=args.batch_size)
        entry["load_average_end"] = round(os.getloadavg()[0], 2)
        print(json.dumps(entry), flush=True)
        print(_table([entry]), file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
