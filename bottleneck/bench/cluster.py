"""The cluster engines against the local engine on the same images and base.

``python -m bottleneck_transfer.bench.cluster --engines local,dask,ray`` extracts one source
with each engine at two sizes, ``repeats`` times, the engines' order rotating each repeat
(so a burst of load from elsewhere hits each alike), and prints one JSON line: per engine

* ``marginal``: images/s between the two sizes, ``(n_large - n_small) / (t_large -
  t_small)`` (the median over repeats): fixed costs (building the base in the client,
  connecting, the first call) cancel; what is left is the engine's per-image cost, shards,
  tasks, shard files and the join included;
* ``whole``: images/s of the whole ``extract`` call at the large size (the median), start-up
  and join included;
* ``cpu_ms_per_image``: marginal CPU time of this process and every process under it (the
  Dask workers and nanny, the Ray raylet and actors), so idle cores and overheads show apart;

and their ratios to ``local``. The clusters are started once (a ``distributed.LocalCluster``
of ``workers`` single-threaded processes on 127.0.0.1; a Ray head with ``workers`` CPUs,
only inside a network namespace of its own: ``unshare -n``, then ``ip link set lo up``) and
warmed (each worker builds the base on a small job first); their start-up is reported apart.
Each engine's cache at the large size is compared with the local one (max|a-b|/max|b|).
Nothing here asserts a time; the load average is recorded.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from bottleneck_transfer.bench.timing import marginal, rotations
from bottleneck_transfer.features.extract import extract

ENGINES = ("local", "dask", "ray")


def tree_cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and every live process under it."""
    import psutil

    me = psutil.Process()
    total = 0.0
    for process in [me, *me.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def default_shard_images(n_images: int, workers: int, batch_size: int) -> int:
    """Two shards per worker, in whole batches: few fixed costs per shard, no lone tail."""
    per_shard = -(-n_images // (2 * workers))
    return max(batch_size, -(-per_shard // batch_size) * batch_size)


@contextlib.contextmanager
def _dask(workers: int) -> Iterator[dict[str, Any]]:
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster),
    ):
        yield {"engine": "dask", "scheduler": cluster.scheduler_address}


@contextlib.contextmanager
def _ray(workers: int) -> Iterator[dict[str, Any]]:
    import ray
    from bottleneck_transfer.bench.sources import start_ray_head

    try:
        start_ray_head(workers)  # refuses outside a network namespace of its own
        ray.init(address="auto", log_to_driver=False)
        yield {"engine": "ray", "workers": workers}
    finally:
        ray.shutdown()
        subprocess.run(["ray", "stop", "--force"], capture_output=True)


def _relative(path: Path, reference: Path) -> float:
    from bottleneck_transfer.features.cache import FeatureCache

    with FeatureCache.open(path) as got, FeatureCache.open(reference) as want:
        if got.ids != want.ids:
            return float("inf")
        a, b = np.asarray(got.features, np.float64), np.asarray(want.features, np.float64)
        return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def bench_engines(
    base: str,
    source: str,
    *,
    engines: Sequence[str] = ("local", "dask"),
    sizes: Sequence[int] = (2000, 6000),
    repeats: int = 2,
    workers: int = 2,
    batch_size: int = 64,
    shard_images: int | None = None,
    base_options: dict | None = None,
) -> dict[str, Any]:
    """The figures of the module docstring for ``engines`` (``local`` always included)."""
    engines = ["local", *(e for e in engines if e != "local")]
    options = {"batch_size": batch_size, "progress": False, "force": True, **(base_options or {})}
    report: dict[str, Any] = {
        "base": base,
        "source": source,
        **(base_options or {}),
        "sizes": list(sizes),
        "repeats": repeats,
        "workers": workers,
        "batch_size": batch_size,
        "shard_images": {
            n: shard_images or default_shard_images(n, workers, batch_size) for n in sizes
        },
        "load_average_start": [round(x, 1) for x in os.getloadavg()],
    }
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        folder = Path(tmp)
        settings: dict[str, dict[str, Any]] = {"local": {}}
        start_up = {}
        for engine in engines[1:]:
            started = time.perf_counter()
            settings[engine] = stack.enter_context({"dask": _dask, "ray": _ray}[engine](workers))
            warm = {**options, "limit": batch_size * workers, "shard_images": batch_size}
            extract(source, base, folder / "warm.h5", **settings[engine], **warm)
            start_up[engine] = round(time.perf_counter() - started, 1)

        def run(engine: str, n: int) -> tuple[float, float]:
            chosen = {**settings[engine], "limit": n, **options}
            if engine != "local":
                chosen["shard_images"] = report["shard_images"][n]
            wall, cpu = time.perf_counter(), tree_cpu_seconds()
            extract(source, base, folder / f"{engine}.h5", **chosen)
            return time.perf_counter() - wall, tree_cpu_seconds() - cpu

        rows: dict[str, list[dict[int, tuple[float, float]]]] = {e: [] for e in engines}
        for order in rotations(engines, repeats):
            for engine in order:
                rows[engine].append({n: run(engine, n) for n in sizes})
        report["engines"] = _summary(rows, sizes)
        report["relative_difference_to_local"] = {
            e: _relative(folder / f"{e}.h5", folder / "local.h5") for e in engines[1:]
        }
    report["cluster_start_and_warm_seconds"] = start_up
    report["load_average_end"] = [round(x, 1) for x in os.getloadavg()]
    return report


def _summary(
    rows: dict[str, list[dict[int, tuple[float, float]]]], sizes: Sequence[int]
) -> dict[str, dict[str, float]]:
    """Per engine: median marginal and whole-job rates, CPU ms per image, ratios to local."""
    large = max(sizes)
    out: dict[str, dict[str, float]] = {}
    for engine, runs in rows.items():
        marginals = [marginal({n: wall for n, (wall, _) in run.items()}) for run in runs]
        wholes = [large / run[large][0] for run in runs]
        cpus = [1000 / marginal({n: cpu for n, (_, cpu) in run.items()}) for run in runs]
        out[engine] = {
            "marginal": round(statistics.median(marginals), 1),
            "whole": round(statistics.median(wholes), 1),
            "cpu_ms_per_image": round(statistics.median(cpus), 3),
            "marginal_each": [round(m, 1) for m in marginals],
        }
    for figures in out.values():
        figures["marginal_vs_local"] = round(figures["marginal"] / out["local"]["marginal"], 3)
        figures["whole_vs_local"] = round(figures["whole"] / out["local"]["whole"], 3)
    return out


def bench_dask(
    base: str,
    source: str,
    *,
    n_images: int,
    workers: int = 2,
    batch_size: int = 64,
    base_options: dict | None = None,
) -> dict[str, Any]:
    """The Dask figures of :func:`bench_engines` at ``n_images / 3`` and ``n_images``, one
    repeat (what ``bench --parts dask`` reports)."""
    sizes = (max(batch_size, n_images // 3), n_images)
    return bench_engines(
        base,
        source,
        engines=("local", "dask"),
        sizes=sizes,
        repeats=1,
        workers=workers,
        batch_size=batch_size,
        base_options=base_options,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", default="local,dask", help="of local,dask,ray")
    parser.add_argument("--base", help="default: the shipped 28-px Fashion-MNIST base")
    parser.add_argument("--source", help="default: Fashion-MNIST as PNG files in class folders")
    parser.add_argument("--sizes", default="2000,6000", help="small,large")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--shard-images", type=int, help="default: two shards per worker")
    parser.add_argument("--image-size", type=int)
    parser.add_argument("--weights", help="none: random weights")
    parser.add_argument("--json", type=Path, help="also write the JSON line here")
    args = parser.parse_args(argv)
    from bottleneck_transfer.bench.sources import BASE, write_sources

    sizes = tuple(int(n) for n in args.sizes.split(","))
    given = {"image_size": args.image_size, "weights": args.weights}
    base_options = {key: value for key, value in given.items() if value is not None}
    with tempfile.TemporaryDirectory() as tmp:
        source = args.source or write_sources(Path(tmp), max(sizes), ("folder",))["folder"]
        report = bench_engines(
            args.base or BASE,
            source,
            engines=args.engines.split(","),
            sizes=sizes,
            repeats=args.repeats,
            workers=args.workers,
            batch_size=args.batch_size,
            shard_images=args.shard_images,
            base_options=base_options,
        )
    print(json.dumps(report), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    print(
        " ".join(
            f"{e}: marginal {f['marginal']}/s ({f['marginal_vs_local']}x), whole {f['whole']}/s "
            f"({f['whole_vs_local']}x), {f['cpu_ms_per_image']} CPU ms/img;"
            for e, f in report["engines"].items()
        ),
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
