"""Benchmark of issue 28's runtimes: Keras against ONNX Runtime, and what ``auto`` picks.

``python -m bottleneck_transfer.bench.runtimes [--bases mobilenet_v2,resnet50] [--repeats 3]``
prints one JSON line per base as it finishes (the machine first; a table on stderr), so a
run stopped early keeps the bases done; ``--json FILE`` also writes them. For each base at
224 x 224 (random weights), in one run and one process:

* ``model``: R_model of each runtime, its runner on preloaded uint8 pixels (what the loop
  calls): ``batch / median seconds of one call`` over ``2 x repeats`` calls after a warm
  one (a marginal rate: tracing, compiling and allocating are in the warm call), the
  runtimes taking turns call by call (``keras, onnx, onnx_threads_N, keras, ...``), so a
  burst of load from elsewhere hits each alike. ONNX Runtime also with one intra-op thread
  fewer than the cores (the threads left after decoding).
* ``decode``: R_decode, the extractor's decoding and resizing on all cores (marginal over
  two sizes, the median of ``repeats``).
* ``limit``: L = 1 / (1/R_model + 1/R_decode) per runtime (the design's performance section:
  on a CPU the model and decoding share the cores).
* ``extract``: :func:`features.extract.extract` end to end with ``runtime`` keras, onnx and
  auto, a marginal rate ``(n_large - n_small) / (t_large - t_small)`` over two source
  sizes (so opening the runner, the store look-ups and the finishing write cancel), the
  median of ``repeats``; the runtimes' order rotates each repeat. The conversion and
  auto's probe are made before (they are stored once); the base is built once and passed
  to every run.
* ``cpu_ms_per_image``: this process's CPU time per image of each model, decode and extract
  run (medians): on a machine shared with other jobs wall-clock rates wander, CPU work less;
  so the ratios also say how much CPU work extract adds to the model's and decoding's, and
  whether ``auto`` costs what the runtime it chose costs.
* ``ratios``: onnx/keras for the model, L and end to end; end to end / L of the faster
  runtime; auto / the faster runtime's end-to-end rate. And the session's settings.

The converted graphs and probes go to the store (``$BOTTLENECK_CACHE_DIR`` or a temporary
folder); the conversion's seconds are reported (once per base, then read back). Nothing here
asserts a time; the load average at the start and end of each base is recorded.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from bottleneck_transfer.bench.timing import marginal, median, rotations

#: Images of the small and large runs whose difference gives a marginal rate.
SIZES = (64, 192)
#: Repeats of each measurement (the median counts).
REPEATS = 3


def _cpu() -> float:
    times = os.times()
    return times.user + times.system


def _timed(function: Callable[[], Any]) -> tuple[float, float, Any]:
    """Wall and CPU seconds of ``function()``, and what it returned."""
    wall, cpu = time.perf_counter(), _cpu()
    returned = function()
    return time.perf_counter() - wall, _cpu() - cpu, returned


def model_rates(
    runners: dict[str, Any], pixels: np.ndarray, calls: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Each runner's images/s (batch / median call) and CPU ms per image over ``calls``
    calls taking turns, after a warm call each."""
    for runner in runners.values():
        runner(pixels)
    walls: dict[str, list[float]] = {name: [] for name in runners}
    cpus: dict[str, list[float]] = {name: [] for name in runners}
    for order in rotations(list(runners), calls):
        for name in order:
            wall, cpu, _ = _timed(lambda name=name: runners[name](pixels))
            walls[name].append(wall)
            cpus[name].append(cpu)
    n = len(pixels)
    rates = {name: n / max(statistics.median(w), 1e-9) for name, w in walls.items()}
    cpu_ms = {name: 1000 * statistics.median(c) / n for name, c in cpus.items()}
    return rates, cpu_ms


def marginal_rates(
    runs: dict[str, Callable[[int], Any]], sizes: Sequence[int], repeats: int
) -> dict[str, dict[str, float]]:
    """Per run, over ``repeats`` (the runs' order rotating): the median marginal rate over
    ``sizes`` (``run(n)`` does ``n`` images) as ``rate``, its marginal CPU ms per image as
    ``cpu_ms``, and, where ``run`` returns the seconds of its own steady part (the
    extraction loop), that part's marginal rate as ``inner``. Repeats where the larger run
    was not the longer are left out; ``kept`` counts the others."""
    seen: dict[str, dict[str, list[float]]] = {
        name: {"rate": [], "cpu_ms": [], "inner": []} for name in runs
    }
    for order in rotations(list(runs), repeats):
        for name in order:
            run = runs[name]
            timed = {n: _timed(lambda n=n, run=run: run(n)) for n in sizes}
            figures = seen[name]
            figures["rate"].append(marginal({n: t[0] for n, t in timed.items()}))
            figures["cpu_ms"].append(1000 / marginal({n: t[1] for n, t in timed.items()}))
            if all(isinstance(t[2], float) for t in timed.values()):
                figures["inner"].append(marginal({n: t[2] for n, t in timed.items()}))
    return {
        name: {
            **{key: median(values) for key, values in figures.items() if values},
            "kept": sum(not math.isnan(v) for v in figures["rate"]),
        }
        for name, figures in seen.items()
    }


def bench_runtimes(
    base: str,
    *,
    image_size: int = 224,
    batch_size: int = 64,
    repeats: int = REPEATS,
    sizes: Sequence[int] = SIZES,
) -> dict[str, Any]:
    """The figures of the module docstring for ``base`` (random weights)."""
    from bottleneck_transfer.bench.suite import decode_source, limit_rate, photo_folder
    from bottleneck_transfer.features.runners import make_context
    from bottleneck_transfer.features.runners import onnx as onnx_runtime
    from bottleneck_transfer.features.runners.keras import KerasRunner
    from bottleneck_transfer.features.runtimes import load_pass
    from bottleneck_transfer.features.sources import open_source

    job = load_pass(base, weights="none", image_size=image_size)
    context = make_context()
    source = open_source(photo_folder(max(sizes)))
    pixels = decode_source(source, job.runner, context.threads, batch_size)[:batch_size]
    entry: dict[str, Any] = {
        "base": base,
        "image_size": image_size,
        "batch_size": batch_size,
        "repeats": repeats,
        "sizes": list(sizes),
        "load_average_start": round(os.getloadavg()[0], 2),
    }
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
    model, model_cpu = model_rates(runners, pixels, 2 * repeats)
    del runners
    decoded = marginal_rates(
        {
            "decode": lambda n: decode_source(
                replace(source, items=source.items[:n]), job.runner, context.threads, batch_size
            )
        },
        sizes,
        repeats,
    )["decode"]
    decode = decoded["rate"]
    limits = {name: limit_rate(model[name], decode, False) for name in ("keras", "onnx")}
    extracted, auto = end_to_end(job, source, batch_size, repeats, sizes)
    rates = {name: figures["rate"] for name, figures in extracted.items()}
    loop = {name: figures.get("inner", math.nan) for name, figures in extracted.items()}
    entry.update(
        model={k: round(v, 2) for k, v in model.items()},
        decode=round(decode, 1),
        limit={k: round(v, 2) for k, v in limits.items()},
        extract={k: round(v, 2) for k, v in rates.items()},
        extract_loop={k: round(v, 2) for k, v in loop.items()},
        repeats_kept={k: f["kept"] for k, f in extracted.items()},
        cpu_ms_per_image={
            "model": {k: round(v, 1) for k, v in model_cpu.items()},
            "decode": round(decoded["cpu_ms"], 2),
            "extract": {k: round(f["cpu_ms"], 1) for k, f in extracted.items()},
        },
        auto_choice=auto["name"],
        auto_probe=auto.get("probe", {}).get("rates"),
        ratios={
            **_ratios(model, limits, rates, loop),
            **_cpu_ratios(model_cpu, decoded["cpu_ms"], extracted, auto["name"]),
        },
        threads={"model_threads": context.threads, "decode_workers": context.threads},
        load_average_end=round(os.getloadavg()[0], 2),
    )
    return entry


def end_to_end(
    job: Any, source: Any, batch_size: int, repeats: int, sizes: Sequence[int]
) -> tuple[dict[str, dict[str, float]], dict]:
    """:func:`marginal_rates` of extract with each runtime (``inner``: of its loop, from the
    cache's ``stage_seconds``, without opening the runner and finishing the file); the
    runtime provenance of the last ``auto`` run."""
    from bottleneck_transfer.features.cache import FeatureCache
    from bottleneck_transfer.features.extract import extract

    with tempfile.TemporaryDirectory() as folder:
        out = {name: Path(folder) / f"{name}.h5" for name in ("keras", "onnx", "auto")}

        def run(runtime: str) -> Callable[[int], float]:
            def go(n: int) -> float:
                part = replace(source, items=source.items[:n])
                options = {"batch_size": batch_size, "progress": False, "force": True}
                extract(part, job.runner, out[runtime], runtime=runtime, **options)
                with FeatureCache.open(out[runtime]) as cache:
                    stages = cache.provenance["extraction"]["stage_seconds"]
                return float(sum(stages.values()))

            return go

        runs = {name: run(name) for name in out}
        for go in runs.values():
            go(batch_size)  # warm: auto probes (stored) here
        figures = marginal_rates(runs, sizes, repeats)
        with FeatureCache.open(out["auto"]) as cache:
            auto = cache.provenance["extraction"]["runtime"]
    return figures, auto


def _ratios(model: dict, limits: dict, extract: dict, loop: dict) -> dict[str, float]:
    faster = max(("keras", "onnx"), key=lambda name: extract[name])
    limit = max(limits.values())
    return {
        "model_onnx_over_keras": round(model["onnx"] / model["keras"], 3),
        "limit_onnx_over_keras": round(limits["onnx"] / limits["keras"], 3),
        "extract_onnx_over_keras": round(extract["onnx"] / extract["keras"], 3),
        "extract_over_limit_of_faster": round(extract[faster] / limit, 3),
        "loop_over_limit_of_faster": round(loop.get(faster, math.nan) / limit, 3),
        "auto_over_faster": round(extract["auto"] / extract[faster], 3),
    }


def _cpu_ratios(
    model_cpu: dict[str, float], decode_cpu: float, extracted: dict, auto: str
) -> dict[str, float]:
    """Ratios of CPU work, which a busy machine moves far less than wall-clock rates: the
    model's and decoding's CPU ms per image over extract's (1: extract adds no work), for
    the runtime ``auto`` chose; and extract's CPU ms per image with that runtime over with
    ``auto`` (1: auto's choice runs as that runtime does)."""
    cpu = {name: figures["cpu_ms"] for name, figures in extracted.items()}
    return {
        "cpu_model_and_decode_over_extract": round((model_cpu[auto] + decode_cpu) / cpu[auto], 3),
        "cpu_auto_choice_over_auto": round(cpu[auto] / cpu["auto"], 3),
    }


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
            f"({e['extract']['auto']}/s); ratios {json.dumps(e['ratios'])}; load "
            f"{e['load_average_start']}-{e['load_average_end']}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bases", default="mobilenet_v2,resnet50")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="small,large")
    parser.add_argument("--json", type=Path, help="also write the JSON lines here")
    args = parser.parse_args(argv)
    from bottleneck_transfer.bench.suite import _machine

    sizes = tuple(int(n) for n in args.sizes.split(","))
    if not os.environ.get("BOTTLENECK_CACHE_DIR"):
        os.environ["BOTTLENECK_CACHE_DIR"] = tempfile.mkdtemp(prefix="bottleneck-runtimes-")
    lines = [{"machine": _machine(os.cpu_count() or 1)}]
    print(json.dumps(lines[0]), flush=True)
    for base in args.bases.split(","):
        entry = bench_runtimes(
            base,
            image_size=args.image_size,
            batch_size=args.batch_size,
            repeats=args.repeats,
            sizes=sizes,
        )
        lines.append(entry)
        print(json.dumps(entry), flush=True)
        print(_table([entry]), file=sys.stderr, flush=True)
        if args.json:
            args.json.write_text("".join(json.dumps(line) + "\n" for line in lines))


if __name__ == "__main__":
    main()
