"""Benchmark of issue 26: stage 2 at the scale of extraction (memory flat in N, time linear).

``python -m bottleneck_transfer.bench.scale --rows 200000 --rows 2000000`` writes one
synthetic cache per size (``--dim`` features, float16, class structure: Gaussian classes
around random means) through the library's own :class:`~features.cache.CacheWriter`, then
runs each command below on it in a fresh process and prints JSON: the peak resident memory
of that process (``ru_maxrss`` from ``os.wait4``), its seconds, rows/s and the path it took
(in memory or streaming, from its ``--json``):

* ``train --head logreg`` and ``train --head dense``;
* ``compare --val-split 0.2 --heads logreg,linear-svm`` (holdout, two heads);
* ``evaluate`` of the logreg head on the same cache;
* ``cache export`` to Parquet.

``--memory-budget`` is passed to every command (default: the commands' own default), so one
run can measure the in-memory path and another the streaming path. Nothing asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bottleneck_transfer.atomic import atomic_write_text

#: Distance between two class means, in units of the noise's standard deviation: the
#: classes overlap a little, so heads differ (a linear head reaches about 95 %).
SEPARATION = 3.0
#: Rows per batch handed to the writer (one commit each).
WRITE_ROWS = 16_384


def synthetic_cache(
    path: str | Path,
    rows: int,
    *,
    dim: int = 1280,
    classes: int = 10,
    store_dtype: str = "float16",
    seed: int = 0,
    part: int = 0,
) -> Path:
    """Write a cache of ``rows`` Gaussian-class feature rows through :class:`CacheWriter`.

    Row ``i`` has class ``i % classes`` (the classes interleave, as a shuffled source
    would); its features are the class mean plus unit noise, the means ``SEPARATION``
    apart. ``seed`` draws the means, ``(seed, part)`` the noise: parts 0 and 1 are a train
    and a test cache of the same classes. Memory is one batch of :data:`WRITE_ROWS` rows.
    """
    from bottleneck_transfer.features.cache import CacheWriter
    from bottleneck_transfer.features.cache.partial import partial_path
    from bottleneck_transfer.fingerprint import fingerprint

    path = Path(path)
    means = np.random.default_rng(seed).standard_normal((classes, dim), dtype=np.float32)
    means *= SEPARATION / np.sqrt(2 * dim)
    identity = {
        "base": {"name": "synthetic", "dim": dim},
        "source": {"kind": "synthetic", "rows": rows, "classes": classes, "seed": [seed, part]},
    }
    rng = np.random.default_rng((seed, part))
    writer = CacheWriter.create(
        partial_path(path),
        dim=dim,
        fingerprint=fingerprint(identity),
        identity=identity,
        provenance=dict(identity),
        class_names=[f"class{k}" for k in range(classes)],
        store_dtype=store_dtype,
    )
    for start in range(0, rows, WRITE_ROWS):
        stop = min(start + WRITE_ROWS, rows)
        labels = np.arange(start, stop, dtype=np.int32) % classes
        features = rng.standard_normal((stop - start, dim), dtype=np.float32)
        features += means[labels]
        ids = [f"synthetic/{part}-{i:08d}" for i in range(start, stop)]
        writer.write_batch(features, labels, ids, [], items_done=stop)
        writer.commit()
    return writer.finalize(path, extraction={"seconds": 0.0})


def run_measured(args: list[str]) -> dict:
    """Run ``bottleneck ARGS`` in a fresh process: its peak RSS (bytes), seconds and JSON."""
    command = [sys.executable, "-m", "bottleneck_transfer", *args]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(process.pid, 0)  # this child's own peak, unlike wait()
        seconds = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if process.returncode:
        raise RuntimeError(f"bottleneck {' '.join(args)} failed: {stderr.strip()[-2000:]}")
    try:
        result = json.loads(stdout)
    except json.JSONDecodeError:
        result = None
    # Linux reports kilobytes
    return {"seconds": seconds, "peak_bytes": usage.ru_maxrss * 1024, "json": result}


def commands(
    cache: Path, folder: Path, *, logreg: str = "logreg", dense: str = "dense"
) -> dict[str, list[str]]:
    """The measured command lines, by name (``evaluate`` scores the logreg head)."""
    head = str(folder / "logreg.skops")
    dense_head = str(folder / "dense.skops")
    return {
        "train logreg": ["train", str(cache), "--head", logreg, "-o", head, "--force"],
        "compare holdout": [
            *("compare", str(cache), "--val-split", "0.2", "--heads", f"{logreg},linear-svm"),
            *("--bootstrap", "200", "--quiet"),
        ],
        "evaluate": ["evaluate", head, str(cache), "--bootstrap", "200"],
        "cache export": ["cache", "export", str(cache), "-o", str(folder / "export.parquet")],
        # last: the slowest (a run cut short by a deadline keeps the others)
        "train dense": ["train", str(cache), "--head", dense, "-o", dense_head, "--force"],
    }


def bench(
    rows: list[int],
    *,
    dim: int,
    budget: str | None,
    folder: Path,
    out: Path | None = None,
    out_of_core: bool = False,
    only: list[str] | None = None,
    **specs: str,
) -> dict:
    """Write one cache per size, run every command on it; figures by size and command.

    ``specs``: ``logreg`` and ``dense`` head specs (:func:`commands`); ``only``: these
    commands, in this order (``evaluate`` needs ``train logreg`` before it); ``out_of_core``: pass
    ``--out-of-core`` too (streaming at every size). ``out``: a JSON file
    rewritten after every command (a run cut short keeps what it measured). Returns
    ``{"settings", "machine", "sizes": {rows: ...}, "seconds"}``; each command's ``load`` is
    the machine's 1-minute load average as it started (a busy machine's figures say so)."""
    from bottleneck_transfer.bench.suite import _cpu_name, _load, _memory_gib

    started = time.perf_counter()
    settings = {"dim": dim, "memory_budget": budget, "out_of_core": out_of_core, **specs}
    machine = {
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "load_average_start": _load(),
    }
    sizes: dict = {}
    results = {"settings": settings, "machine": machine, "sizes": sizes}
    for n in rows:
        cache = folder / f"synthetic-{n}.h5"
        start = time.perf_counter()
        synthetic_cache(cache, n, dim=dim)
        written = time.perf_counter() - start
        limit = ["--memory-budget", budget] if budget else []
        limit += ["--out-of-core"] if out_of_core else []
        by_command: dict = {}
        sizes[str(n)] = {
            "feature_bytes_float32": n * dim * 4,
            "file_bytes": cache.stat().st_size,
            "write_seconds": written,
            "commands": by_command,
        }
        measured_commands = commands(cache, folder, **specs)
        for name in only or list(measured_commands):
            args = measured_commands[name]
            takes_budget = args[0] in ("train", "compare", "evaluate")
            load = os.getloadavg()[0]
            measured = run_measured([*args, *(limit if takes_budget else []), "--json"])
            reported = measured.pop("json") or {}
            by_command[name] = {
                **measured,
                "rows_per_second": n / measured["seconds"],
                "path": (reported.get("memory") or {}).get("path"),
                "load": load,
            }
            machine["load_average_end"] = _load()
            results["seconds"] = round(time.perf_counter() - started, 1)
            if out is not None:
                atomic_write_text(out, json.dumps(results, indent=1) + "\n")
        cache.unlink()
    return results


def format_scale(figures: dict) -> list[str]:
    """The README table of :func:`bench`'s JSON: per command, each size's path, peak memory
    and rows/s, then the largest size against the smallest (peak ratio, time per row ratio;
    issue 26's targets: within 1.1 and 1.5)."""
    sizes = sorted(figures["sizes"], key=int)
    small, large = figures["sizes"][sizes[0]], figures["sizes"][sizes[-1]]
    header = ["command"]
    for n in sizes:
        header += [f"{int(n):,} rows: path", "peak", "rows/s"]
    if len(sizes) > 1:
        header += ["peak ratio", "time/row ratio"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in small["commands"]:
        cells = [name]
        for n in sizes:
            measured = figures["sizes"][n]["commands"].get(name)
            if measured is None:
                cells += ["not run", "", ""]
                continue
            gb = measured["peak_bytes"] / 1e9
            cells += [
                measured["path"] or "streams",
                f"{gb:.2f} GB",
                f"{measured['rows_per_second']:,.0f}",
            ]
        if len(sizes) > 1:
            a, b = small["commands"][name], large["commands"].get(name)
            ratio = b is not None and b["peak_bytes"] / a["peak_bytes"]
            per_row = b is not None and a["rows_per_second"] / b["rows_per_second"]
            cells += [f"{ratio:.2f}", f"{per_row:.2f}"] if b else ["", ""]
        lines.append("| " + " | ".join(cells) + " |")
    settings = figures["settings"]
    lines += [
        "",
        f"Synthetic float16 caches of {settings['dim']:,} features; memory budget "
        f"{settings['memory_budget'] or 'the default'}; heads `{settings['logreg']}`, "
        f"`{settings['dense']}`; peak: the command's process (`ru_maxrss`); `cache export` "
        "takes no budget (it always streams row groups).",
    ]
    return lines


def merge_runs(runs: list[dict]) -> dict:
    """Runs of the same settings as one JSON, their sizes side by side (each command keeps
    the load it ran at, each size whether it was run with ``--out-of-core``; the machine's
    load goes from the first run's start to the last's end, ``seconds`` is their sum).

    Raises
    ------
    ValueError
        If the runs' settings differ, naming both.
    """

    def shared(run: dict) -> dict:  # --out-of-core is kept per size: the paths say the same
        return {k: v for k, v in run["settings"].items() if k != "out_of_core"}

    settings = shared(runs[0])
    for run in runs[1:]:
        if shared(run) != settings:
            raise ValueError(f"runs of other settings: {shared(run)} against {settings}")
    machine = {**runs[0]["machine"], "load_average_end": runs[-1]["machine"]["load_average_end"]}
    sizes = {
        n: {**figures, "out_of_core": run["settings"].get("out_of_core", False)}
        for run in runs
        for n, figures in run["sizes"].items()
    }
    seconds = round(sum(run["seconds"] for run in runs), 1)
    return {"settings": settings, "machine": machine, "sizes": sizes, "seconds": seconds}


def main(argv: list[str] | None = None) -> None:
    """Print the benchmark's JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, action="append", help="Cache sizes (repeatable).")
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--memory-budget", help="Passed to train, compare and evaluate.")
    parser.add_argument(
        "--out-of-core", action="store_true", help="Stream whatever the size (as the budget)."
    )
    parser.add_argument("--folder", type=Path, help="Where the caches go (default: a temp dir).")
    parser.add_argument("--logreg", default="logreg", help="The logreg spec (e.g. logreg:C=1).")
    parser.add_argument("--dense", default="dense", help="The dense spec (e.g. dense:epochs=2).")
    parser.add_argument(
        "--command",
        action="append",
        help="Run only this command (repeatable, in this order; default: all).",
    )
    parser.add_argument("-o", "--out", type=Path, help="Also write the JSON here, as it goes.")
    parser.add_argument(
        "--merge", type=Path, action="append", help="Measure nothing: join these runs' JSON."
    )
    args = parser.parse_args(argv)
    if args.merge:
        runs = [json.loads(path.read_text(encoding="utf-8")) for path in args.merge]
        merged = json.dumps(merge_runs(runs), indent=1) + "\n"
        if args.out is not None:
            atomic_write_text(args.out, merged)
        print(merged, end="")
        return
    rows = args.rows or [200_000, 2_000_000]
    with tempfile.TemporaryDirectory(dir=args.folder) as folder:
        figures = bench(
            rows,
            dim=args.dim,
            budget=args.memory_budget,
            folder=Path(folder),
            out=args.out,
            out_of_core=args.out_of_core,
            only=args.command,
            logreg=args.logreg,
            dense=args.dense,
        )
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
