"""``--runtime auto``: the faster runtime for this base on this machine, probed once.

On a CPU, both runtimes run :data:`PROBE_CALLS` timed calls, taking turns (after one untimed
call that traces, compiles or warms each) on a seeded batch of the run's batch size (the
model's cost does not depend on the pixels, so it stands for the first batch); the faster
one runs the pass. ONNX Runtime is a candidate only where the conversion holds (parity
checked, :mod:`.onnx`); where it does not, or onnx is not installed, Keras runs and the
reason is kept.
On an accelerator, Keras runs unless ONNX Runtime has a matching execution provider (then
both are probed there).

The result is stored in ``<store>/runtimes/probe-<24 hex>.json``, keyed by the converted
graph's identity (base, weights, outputs, converter), the batch size and the machine (CPU
model, cores, accelerator), with its manifest beside it: a second run reads it and probes
nothing; ``bottleneck cache ls`` lists it and ``cache prune`` removes it like other entries.
The chosen runner's provenance records the choice, the probe's rates (images/s), whether
they were read back, and the versions.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bottleneck_transfer.entries import EntryManifest, manifest_path, reusable
from bottleneck_transfer.errors import BottleneckError
from bottleneck_transfer.features.choices import RUNTIMES
from bottleneck_transfer.features.runners.base import RunContext, Runner, get_runtime
from bottleneck_transfer.features.store import CacheStore
from bottleneck_transfer.fingerprint import fingerprint

if TYPE_CHECKING:
    import numpy as np
    from bottleneck_transfer.features.runtimes import Pass

#: Timed calls per runtime in a probe (the best one counts).
PROBE_CALLS = 2


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else :func:`platform.processor`."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(context: RunContext) -> dict[str, Any]:
    """What the probe's rates depend on besides the base: CPU model, cores, accelerator."""
    return {"cpu": cpu_model(), "cores": context.threads, "accelerator": context.accelerator}


def rates(runners: dict[str, Runner], pixels: np.ndarray) -> dict[str, float]:
    """Images per second of each runner on ``pixels``: the best of :data:`PROBE_CALLS` timed
    calls after an untimed one each, the runners taking turns call by call (a burst of load
    from elsewhere then slows a call of each, not all calls of one)."""
    for runner in runners.values():
        runner(pixels)
    best = dict.fromkeys(runners, float("inf"))
    for _ in range(PROBE_CALLS):
        for name, runner in runners.items():
            started = time.perf_counter()
            runner(pixels)
            best[name] = min(best[name], time.perf_counter() - started)
    return {name: len(pixels) / max(seconds, 1e-9) for name, seconds in best.items()}


class Chosen:
    """The runner ``auto`` chose, its provenance extended by the choice and the probe."""

    def __init__(self, runner: Runner, probe: dict) -> None:
        self.runner, self.probe = runner, probe
        self.name = runner.name

    def __call__(self, pixels: np.ndarray) -> np.ndarray | list[np.ndarray]:
        return self.runner(pixels)

    @property
    def provenance(self) -> dict:
        return {**self.runner.provenance, "chosen_by": "auto", "probe": self.probe}


def _probe(job: Pass, batch_size: int, context: RunContext) -> tuple[dict, dict[str, Runner]]:
    """Probe both runtimes: the record to store, and the runners already opened (warm)."""
    from bottleneck_transfer.features.runners import onnx as onnx_runtime

    runners: dict[str, Runner] = {"keras": get_runtime("keras").open(job, batch_size, context)}
    record: dict[str, Any] = {"rates": {}}
    try:
        runners["onnx"] = onnx_runtime.open(job, batch_size, context)
    except BottleneckError as exc:  # no conversion, no parity, no onnx: Keras runs
        record["onnx_unavailable"] = str(exc)
    if len(runners) > 1:
        pixels = onnx_runtime.probe_pixels(job, batch_size)
        record["rates"] = {name: round(r, 2) for name, r in rates(runners, pixels).items()}
    record["choice"] = max(runners, key=lambda name: record["rates"].get(name, 0.0))
    record["batch_size"] = batch_size
    return record, runners


def probe_path(job: Pass, batch_size: int, context: RunContext) -> Path:
    """Where the probe result for ``job`` at ``batch_size`` on this machine is stored."""
    from bottleneck_transfer.features.runners.onnx import graph_identity

    key = {"graph": graph_identity(job), "batch_size": batch_size, "machine": machine(context)}
    return context.store / f"probe-{fingerprint(key).split(':', 1)[-1][:24]}.json"


def _read(path: Path) -> dict | None:
    """The stored probe at ``path`` (as its manifest lists it; its use recorded), else None."""
    if not reusable(path, "runtime probe"):
        return None
    CacheStore.touch(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("choice") not in RUNTIMES:
        return None
    return record


def choose(job: Pass, batch_size: int, context: RunContext) -> Chosen:
    """The runner of the faster runtime for ``job`` here (probed once, then read back)."""
    if context.accelerator:
        from bottleneck_transfer.features.runners import onnx as onnx_runtime

        try:
            provider = onnx_runtime.accelerator_provider()
        except ImportError:
            provider = None
        if provider is None:
            keras_runner = get_runtime("keras").open(job, batch_size, context)
            reason = "accelerator: ONNX Runtime has no matching provider"
            return Chosen(keras_runner, {"choice": "keras", "reason": reason})
    path = probe_path(job, batch_size, context)
    record = _read(path)
    if record is not None:
        runner = get_runtime(record["choice"]).open(job, batch_size, context)
        return Chosen(runner, {**record, "read_back": str(path)})
    record, runners = _probe(job, batch_size, context)
    record["machine"] = machine(context)
    with EntryManifest(manifest_path(path)).writing(path.name) as tmp:
        tmp.write_text(json.dumps(record, indent=1), encoding="utf-8")
    return Chosen(runners[record["choice"]], record)
