"""``bottleneck run`` side by side: distinct run folders, outputs outside the spec's folder."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor

from bottleneck_transfer.pipeline import run as run_module
from bottleneck_transfer.pipeline.run import new_run_dir, outside_lines


class _FrozenClock(dt.datetime):
    @classmethod
    def now(cls, tz=None):
        return cls(2030, 1, 2, 3, 4, 5)


def test_runs_started_in_the_same_second_get_distinct_folders(tmp_path, monkeypatch):
    monkeypatch.setattr(run_module.dt, "datetime", _FrozenClock)
    with ThreadPoolExecutor(4) as pool:
        folders = list(pool.map(lambda _: new_run_dir(tmp_path / "runs", "spec"), range(4)))
    assert sorted(f.name for f in folders) == [
        "20300102-030405-spec",
        "20300102-030405-spec-2",
        "20300102-030405-spec-3",
        "20300102-030405-spec-4",
    ]
    assert all(f.is_dir() for f in folders)


def test_outputs_outside_the_spec_folder_are_named(tmp_path):
    spec_path = tmp_path / "project" / "spec.toml"
    inside = {"outputs": {"dir": str(tmp_path / "project" / "runs"), "cache_dir": None}}
    assert outside_lines(inside, spec_path) == []
    outside = {"outputs": {"dir": str(tmp_path / "runs"), "cache_dir": "/var/tmp/caches"}}
    lines = outside_lines(outside, spec_path)
    assert lines == [
        f"note: outputs.dir is outside the spec's folder {spec_path.parent}: {tmp_path / 'runs'}",
        f"note: outputs.cache_dir is outside the spec's folder {spec_path.parent}: /var/tmp/caches",
    ]
