"""Source kinds on the same images: Fashion-MNIST written as PNG files in class folders, as
WebDataset tar shards and as a Hugging Face ``datasets`` Parquet table.

``python -m bottleneck_transfer.bench.sources throughput --images 2000`` times extraction of
each kind with one base (one run each); ``memory --images 10000 60000`` gives the peak memory
of extracting tar sources of each size, each in a fresh process. Each prints one JSON line.
The engines on these images: :mod:`bench.cluster` (it writes them with :func:`write_sources`
and starts Ray with :func:`start_ray_head`).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from bottleneck_transfer.features.extract import extract
from bottleneck_transfer.features.sources.arrays import read_idx
from bottleneck_transfer.features.sources.fashion_mnist import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DIR,
)

BASE = str(Path(__file__).resolve().parents[2] / "data" / "bases" / "fashion_mnist_0-4.keras")


def _pngs(n: int) -> tuple[list[bytes], np.ndarray]:
    """The first ``n`` Fashion-MNIST training images as PNG bytes, and their labels."""
    from PIL import Image

    images = read_idx(FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz")[:n]
    labels = read_idx(FASHION_MNIST_DIR / "train-labels-idx1-ubyte.gz")[:n]
    encoded = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        encoded.append(buffer.getvalue())
    return encoded, labels


def write_sources(folder: Path, n: int, kinds: tuple[str, ...]) -> dict[str, str]:
    """The same ``n`` images as each of ``kinds`` (folder, tar, parquet) under ``folder``."""
    pngs, labels = _pngs(n)
    names = [f"{FASHION_MNIST_CLASSES[y]}/{k:06d}" for k, y in enumerate(labels)]
    specs = {}
    if "folder" in kinds:
        for name, data in zip(names, pngs, strict=True):
            path = folder / "folder" / f"{name}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        specs["folder"] = str(folder / "folder")
    if "tar" in kinds:
        with tarfile.open(folder / "images.tar", "w") as tar:
            for name, data, y in zip(names, pngs, labels, strict=True):
                for suffix, body in ((".png", data), (".cls", str(int(y)).encode())):
                    info = tarfile.TarInfo(name + suffix)
                    info.size = len(body)
                    tar.addfile(info, io.BytesIO(body))
        specs["tar"] = str(folder / "images.tar")
    if "parquet" in kinds:
        import pyarrow as pa
        import pyarrow.parquet as pq

        features = {"label": {"names": FASHION_MNIST_CLASSES, "_type": "ClassLabel"}}
        meta = {b"huggingface": json.dumps({"info": {"features": features}}).encode()}
        images = [{"bytes": d, "path": f"{n}.png"} for n, d in zip(names, pngs, strict=True)]
        table = pa.table({"image": images, "label": pa.array(labels.astype(np.int64))})
        pq.write_table(table.replace_schema_metadata(meta), folder / "images.parquet", 1000)
        specs["parquet"] = str(folder / "images.parquet")
    return specs


def throughput(n: int, batch_size: int) -> dict[str, Any]:
    """Images/s of extracting the same ``n`` images from a folder, a tar and a table."""
    with tempfile.TemporaryDirectory() as tmp:
        specs = write_sources(Path(tmp), n, ("folder", "tar", "parquet"))
        rates = {}
        for kind, spec in specs.items():
            out = Path(tmp) / f"{kind}.h5"
            result = extract(spec, BASE, out, batch_size=batch_size, progress=False)
            rates[kind] = round(result.images_per_second, 1)
    return {
        "images": n,
        "images_per_second": rates,
        "vs_folder": {k: round(v / rates["folder"], 3) for k, v in rates.items()},
    }


def peak_memory(sizes: list[int], batch_size: int) -> dict[str, Any]:
    """Peak resident memory of extracting a tar source of each size, each in a new process."""
    peaks = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            folder = Path(tmp) / str(n)
            folder.mkdir()
            spec = write_sources(folder, n, ("tar",))["tar"]
            code = (
                "import resource, sys; from bottleneck_transfer.features.extract import extract;"
                f"extract({spec!r}, {BASE!r}, {str(folder / 'c.h5')!r}, "
                f"batch_size={batch_size}, progress=False);"
                "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
            )
            done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
            if done.returncode:
                raise RuntimeError(done.stderr[-2000:])
            peaks[n] = int(done.stdout.split()[-1]) // 1024
    first, last = peaks[sizes[0]], peaks[sizes[-1]]
    return {"peak_mib": peaks, "ratio": round(last / first, 3)}


def start_ray_head(workers: int, attempts: int = 3) -> None:
    """``ray start --head`` on 127.0.0.1 with ``workers`` CPUs, only inside a network namespace
    of its own (``unshare -n``: Ray serves on the machine's address whatever it is told).

    The raylet waits a fixed 30 s for its dashboard agent to write its port files, which an
    oversubscribed machine misses: the agent's ports are fixed, Ray starts at a raised
    priority (as root; otherwise ``nice`` only warns), and the start is retried (after
    ``ray stop --force``).

    Raises
    ------
    RuntimeError
        Outside such a namespace, or when every attempt failed (the last one's error).
    """
    others = [name for _, name in socket.if_nameindex() if name != "lo"]
    if others:
        raise RuntimeError(
            f"Ray would serve on {', '.join(others)}: run inside a network namespace of its "
            "own: unshare -n bash -c 'ip link set lo up && ...'"
        )
    head = [
        "nice", "-n", "-10",
        "ray", "start", "--head", "--node-ip-address", "127.0.0.1", "--num-cpus", str(workers),
        "--include-dashboard", "false", "--dashboard-agent-grpc-port", "52366",
        "--metrics-export-port", "52367", "--dashboard-agent-listen-port", "52368",
        "--runtime-env-agent-port", "52369", "--disable-usage-stats",
    ]  # fmt: skip
    env = {**os.environ, "RAY_enable_metrics_collection": "0"}
    for _ in range(attempts):
        done = subprocess.run(head, env=env, capture_output=True, text=True)
        if done.returncode == 0:
            return
        subprocess.run(["ray", "stop", "--force"], capture_output=True)
    raise RuntimeError(f"ray start failed {attempts} times: {done.stderr[-2000:]}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("part", choices=("throughput", "memory"))
    parser.add_argument("--images", type=int, nargs="+", default=[2000])
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)
    if args.part == "throughput":
        report = throughput(args.images[0], args.batch_size)
    else:
        report = peak_memory(args.images, args.batch_size)
    report["load_average"] = [round(x, 1) for x in os.getloadavg()]
    print(json.dumps(report))


if __name__ == "__main__":
    main()
