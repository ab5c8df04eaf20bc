"""Clusters fail clearly: a bad or unreachable scheduler, one without workers, one killed
mid-run and shards stuck after their worker died each end the CLI in one line within
``--timeout``, keeping the finished shards for a rerun that resumes.

Every cluster is real processes on 127.0.0.1 (``dask scheduler`` / ``dask worker``); every
CLI run is a subprocess with a deadline, so a hang fails the test instead of blocking it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fault_fixtures import tiny_base_file, tiny_images

pytest.importorskip("distributed")

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
#: The CLI's deadline: startup, the base, then a few seconds of --timeout.
DEADLINE = 180
N_IMAGES = 200
#: Two images a shard: 100 shards, so a run is still going when the cluster is broken.
SHARD = ["--batch-size", "2", "--shard-images", "2"]


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> list[str]:
    """``bottleneck extract`` of tiny images through a tiny base, less ``-o`` and engine."""
    root = tmp_path_factory.mktemp("cluster-job")
    images = tiny_images(root / "images", n=N_IMAGES, broken=False)
    base = tiny_base_file(root / "base.keras")
    command = [sys.executable, "-m", "bottleneck_transfer", "extract", str(images)]
    return [*command, "--base", str(base), "--quiet", "--engine", "dask"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dask(*args: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "distributed.cli.dask_" + args[0], *args[1:]]
    return subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture
def scheduler() -> Iterator[tuple[str, subprocess.Popen]]:
    """A `dask scheduler` on 127.0.0.1, without workers."""
    port = _free_port()
    proc = _dask("scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard")
    address = f"tcp://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # listening?
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    yield address, proc
    proc.kill()
    proc.wait()


@pytest.fixture
def worker(scheduler) -> Iterator[subprocess.Popen]:
    """One `dask worker` of ``scheduler`` (no nanny: a killed worker stays dead)."""
    address, _ = scheduler
    proc = _dask(
        "worker", address, "--nthreads", "1", "--no-nanny", "--host", "127.0.0.1",
        "--no-dashboard",
    )  # fmt: skip
    yield proc
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGCONT)  # in case a test stopped it
    proc.kill()
    proc.wait()


def _finish(proc: subprocess.Popen) -> tuple[int, str]:
    """The exit code and stderr of a CLI run, failing the test if it outlives DEADLINE."""
    try:
        _, stderr = proc.communicate(timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"the CLI hung: still running after {DEADLINE} s")
    return proc.returncode, stderr


def _run(args: list[str]) -> tuple[int, str]:
    proc = subprocess.Popen(args, env=ENV, stderr=subprocess.PIPE, text=True)
    return _finish(proc)


def _one_line(stderr: str) -> str:
    """The one ``Error:`` line of a failed CLI run: no traceback, nothing else of ours."""
    assert "Traceback" not in stderr, stderr[-3000:]
    errors = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, stderr[-3000:]
    return errors[0]


def _started(proc: subprocess.Popen, out: Path) -> Path:
    """Wait until the run behind ``proc`` has finished a first shard of ``out``."""
    folder = out.with_name(out.name + ".shards")
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline and proc.poll() is None:
        if any(folder.glob("*.h5")):
            return folder
        time.sleep(0.02)
    pytest.fail(f"no shard finished (exit code {proc.poll()})")


def test_a_scheduler_that_is_not_an_address_is_one_line(job, tmp_path):
    code, stderr = _run([*job, "-o", str(tmp_path / "x.h5"), "--scheduler", "foo"])
    assert code != 0
    line = _one_line(stderr)
    assert "--scheduler 'foo' is not a Dask scheduler address" in line
    assert "tcp://HOST:PORT" in line
    assert not list(tmp_path.iterdir())


def test_an_unreachable_scheduler_is_one_line_within_the_timeout(job, tmp_path):
    address = f"tcp://127.0.0.1:{_free_port()}"  # nothing listens there
    args = [*job, "-o", str(tmp_path / "x.h5"), "--scheduler", address, "--timeout", "2"]
    code, stderr = _run(args)
    assert code != 0
    assert f"cannot reach the Dask scheduler at {address} within 2 s" in _one_line(stderr)


def test_a_scheduler_without_workers_is_one_line_within_the_timeout(job, scheduler, tmp_path):
    address, _ = scheduler
    args = [*job, "-o", str(tmp_path / "x.h5"), "--scheduler", address, "--timeout", "2"]
    code, stderr = _run(args)
    assert code != 0
    line = _one_line(stderr)
    assert f"the Dask scheduler at {address} has no workers (none joined in 2 s)" in line
    assert f"dask worker {address}" in line


def _shards_kept(line: str, folder: Path) -> None:
    """The line says how many shards are kept, and they are there."""
    kept = int(line.split(" of 100 shards are done and kept in ")[0].rsplit("; ", 1)[1])
    assert kept >= 1 and len(list(folder.glob("*.h5"))) == kept
    assert line.endswith("run the same command again to resume")


@pytest.mark.slow  # a worker process starts Keras: about a minute on a busy 2-core machine
def test_a_scheduler_killed_mid_run_is_one_line_and_keeps_the_finished_shards(
    job, scheduler, worker, tmp_path
):
    address, scheduler_proc = scheduler
    out = tmp_path / "x.h5"
    args = [*job, "-o", str(out), "--scheduler", address, "--timeout", "30", *SHARD]
    proc = subprocess.Popen(args, env=ENV, stderr=subprocess.PIPE, text=True)
    folder = _started(proc, out)
    os.kill(worker.pid, signal.SIGSTOP)  # no shard finishes from now on
    scheduler_proc.kill()
    code, stderr = _finish(proc)
    assert code != 0
    line = _one_line(stderr)
    assert f"lost the Dask scheduler at {address}" in line
    _shards_kept(line, folder)
    assert not out.exists()


@pytest.mark.slow  # a worker process starts Keras
def test_shards_stuck_after_their_worker_died_are_one_line_within_the_timeout(
    job, scheduler, worker, tmp_path
):
    address, _ = scheduler
    out = tmp_path / "x.h5"
    args = [*job, "-o", str(out), "--scheduler", address, "--timeout", "3", *SHARD]
    proc = subprocess.Popen(args, env=ENV, stderr=subprocess.PIPE, text=True)
    folder = _started(proc, out)
    worker.kill()  # the cluster's only worker: its shards wait for one forever
    code, stderr = _finish(proc)
    assert code != 0
    line = _one_line(stderr)
    assert f"no worker ran a shard for 3 s on the Dask cluster at {address} (0 workers)" in line
    _shards_kept(line, folder)
    assert not out.exists()
