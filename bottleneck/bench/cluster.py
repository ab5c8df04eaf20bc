"""The Dask engine against the local engine on the same images and base (``bench --parts dask``).

Both sides extract the same source with the same base and batch size. The cluster is a
:class:`distributed.LocalCluster` of ``workers`` single-threaded processes on 127.0.0.1,
started once and warmed (each worker builds the base on a small job first), so the figure is
the engine's steady-state overhead: shards, tasks, shard files and the join. Start-up (the
cluster, each worker's first import of the backend and build of the base) is reported
separately.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from bottleneck_transfer.features.extract import extract


def bench_dask(
    base: str,
    source: str,
    *,
    n_images: int,
    workers: int = 2,
    batch_size: int = 64,
    shard_images: int | None = None,
    base_options: dict | None = None,
    directory: str | Path | None = None,
) -> dict[str, Any]:
    """Images/s of the local engine and of a ``workers``-process local Dask cluster."""
    from distributed import Client, LocalCluster

    options = {"limit": n_images, "batch_size": batch_size, "progress": False, "force": True}
    options.update(base_options or {})
    shard_images = shard_images or max(batch_size, n_images // (4 * workers))
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        folder = Path(tmp)
        local = extract(source, base, folder / "local.h5", **options)
        started = time.perf_counter()
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
            warm = {**options, "limit": batch_size * workers}
            extract(
                source,
                base,
                folder / "warm.h5",
                engine="dask",
                scheduler=cluster.scheduler_address,
                shard_images=batch_size,
                **warm,
            )
            start_up = time.perf_counter() - started
            dask = extract(
                source,
                base,
                folder / "dask.h5",
                engine="dask",
                scheduler=cluster.scheduler_address,
                shard_images=shard_images,
                **options,
            )
    return {
        "base": base,
        "source": source,
        "images": n_images,
        "workers": workers,
        "shard_images": shard_images,
        "local_images_per_second": round(local.images_per_second, 1),
        "dask_images_per_second": round(dask.images_per_second, 1),
        "dask_vs_local": round(dask.images_per_second / local.images_per_second, 3),
        "cluster_start_and_warm_seconds": round(start_up, 1),
    }
