"""``cache ls`` / ``cache prune``: the store removes only what it wrote, never what a running
extraction holds, never through a link, never into what it does not recognise."""

from __future__ import annotations

import json
import os

import h5py
import numpy as np
import pytest
from bottleneck_transfer.cli import cli
from bottleneck_transfer.features.cache import CacheWriter
from bottleneck_transfer.features.cache.partial import partial_path, writer_lock
from bottleneck_transfer.features.store import CacheStore
from click.testing import CliRunner

OLD = (1, 1)  # an mtime long ago: every entry is "older than" any age


def _store_path(store: CacheStore, digit: str):
    return store.path_for("sha256:" + digit * 64)


def _cache(path, complete=True):
    writer = CacheWriter.create(
        partial_path(path),
        dim=2,
        fingerprint="sha256:" + "0" * 64,
        identity={},
        provenance={"base": {"application": "T", "weights": "none"}, "source": {}},
        class_names=["a"],
    )
    writer.write_batch(np.ones((2, 2), np.float32), np.zeros(2, np.int32), ["x", "y"], [], 2)
    writer.commit()
    if complete:
        writer.finalize(path, {})
        CacheStore.seal(path)
    else:
        writer.close()
    return path if complete else partial_path(path)


@pytest.fixture
def store(tmp_path):
    """A store folder holding the store's own caches beside a user's things."""
    store = CacheStore(tmp_path / "caches")
    store.root.mkdir()
    own = {
        "cache": _cache(_store_path(store, "a")),
        "partial": _cache(_store_path(store, "b"), complete=False),
        "held": _cache(_store_path(store, "c"), complete=False),
    }
    with h5py.File(store.root / "model.h5", "w") as h5:  # a user's own Keras-style .h5
        h5["weights"] = np.arange(3)
    (store.root / "photos.h5").mkdir()
    (store.root / "photos.h5" / "cat.jpg").write_bytes(b"\xff\xd8 a photo")
    (store.root / "backup.h5.partial").mkdir()
    (store.root / "backup.h5.partial" / "thesis.tex").write_text("four years of work")
    _store_path(store, "d").write_bytes(b"store-named, but the user's")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "chunk-000000.npz").write_bytes(b"not to be followed")
    partial_path(_store_path(store, "e")).symlink_to(tmp_path / "elsewhere")
    for path in store.root.iterdir():
        os.utime(path, OLD, follow_symlinks=False)
    return store, own


def _everything(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_prune_removes_only_what_the_store_wrote(store):
    store, own = store
    user_things = [
        "backup.h5.partial/thesis.tex",
        "model.h5",
        "photos.h5/cat.jpg",
        _store_path(store, "d").name,
    ]
    with writer_lock(own["held"].with_suffix("")):
        result = store.prune(older_than=0, partial=True)
    assert sorted(result.removed) == sorted([own["cache"], own["partial"]])
    kept = {path.name: why for path, why in result.kept}
    assert kept[own["held"].name] == "in use: a running extraction holds its lock"
    assert "not written by bottleneck" in kept[_store_path(store, "d").name]
    assert kept[partial_path(_store_path(store, "e")).name] == "a symbolic link: not followed"
    left = _everything(store.root)
    assert all(thing in left for thing in user_things)
    assert own["held"].exists() and (own["held"] / "chunk-000000.npz").exists()
    assert os.path.exists(store.root.parent / "elsewhere" / "chunk-000000.npz")


def test_ls_lists_only_store_names(store):
    store, own = store
    entries = {os.path.basename(e["path"]): e for e in store.entries()}
    assert set(entries) == {
        own["cache"].name,
        own["partial"].name,
        own["held"].name,
        _store_path(store, "d").name,
        partial_path(_store_path(store, "e")).name,
    }
    assert entries[own["cache"].name]["status"] == "complete"
    assert entries[own["cache"].name]["rows"] == 2
    assert entries[own["partial"].name]["status"] == "partial"
    assert entries[_store_path(store, "d").name]["status"] == "not ours"


def test_cli_prune_dry_run_removes_nothing_and_says_what_it_would(store):
    store, own = store
    before = _everything(store.root)
    result = CliRunner().invoke(
        cli, ["cache", "prune", "--cache-dir", str(store.root), "--partial", "--dry-run"]
    )
    assert result.exit_code == 0, result.output
    assert f"would remove {own['partial']}" in result.output
    assert f"would remove {own['held']}" in result.output
    assert "symbolic link: not followed" in result.output
    assert "2 would remove, 1 kept" in result.output
    assert _everything(store.root) == before


def test_cli_prune_names_what_it_keeps(store):
    store, own = store
    result = CliRunner().invoke(
        cli, ["cache", "prune", "--cache-dir", str(store.root), "--older-than", "1d"]
    )
    assert result.exit_code == 0, result.output
    assert f"removed {own['cache']}" in result.output
    assert "not written by bottleneck" in result.output and "Traceback" not in result.output
    assert "3 removed, 2 kept" in result.output
    assert (store.root / "photos.h5" / "cat.jpg").exists()


def test_ls_prints_tab_separated_entries_and_ends_with_one_summary(store):
    store, _ = store
    result = CliRunner().invoke(cli, ["cache", "ls", "--cache-dir", str(store.root)])
    assert result.exit_code == 0, result.output
    *lines, summary = result.output.splitlines()
    entries = store.entries()
    assert [line.split("\t")[:2] for line in lines] == [[e["path"], e["kind"]] for e in entries]
    size = sum(e["size_bytes"] for e in entries)
    oldest = min(e["last_used"] for e in entries)
    assert summary.startswith(f"# {len(entries)} entries, {size} bytes")
    assert f"oldest used {oldest}" in summary and not any(line.startswith("#") for line in lines)
    long = CliRunner().invoke(cli, ["cache", "ls", "--cache-dir", str(store.root), "--long"])
    first = long.output.splitlines()[0].split("\t")
    assert first[:2] == lines[0].split("\t")[:2] and first[4:6] == ["complete", "2 rows"]
    assert "# total cache" in long.output and long.output.splitlines()[-1] == summary


def test_prune_dash_removes_the_entries_cache_ls_printed(store, tmp_path):
    store, own = store
    runner = CliRunner()
    listing = runner.invoke(cli, ["cache", "ls", "--cache-dir", str(store.root)]).output
    chosen = "".join(line + "\n" for line in listing.splitlines() if "\tpartial\t" in line)
    outside = tmp_path / "mine.h5"
    outside.write_text("not the store's")
    piped = chosen + f"{outside}\tcache\n# a comment line\n"
    args = ["cache", "prune", "-", "--cache-dir", str(store.root), "--json"]
    result = runner.invoke(cli, args, input=piped)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert sorted(report["removed"]) == sorted([str(own["partial"]), str(own["held"])])
    kept = {k["path"]: k["why"] for k in report["kept"]}
    assert kept[str(outside)] == f"not an entry of the store {store.root}"
    assert kept[str(partial_path(_store_path(store, "e")))] == "a symbolic link: not followed"
    assert own["cache"].exists() and outside.exists() and not own["partial"].exists()


def test_prune_needs_a_criterion_or_entries(store):
    store, _ = store
    result = CliRunner().invoke(cli, ["cache", "prune", "--cache-dir", str(store.root)])
    assert result.exit_code == 1
    assert result.output.startswith("Error: say what to prune") and result.output.count("\n") == 1


def test_cache_where_names_the_store_and_what_chose_it(tmp_path, monkeypatch):
    monkeypatch.setenv("BOTTLENECK_CACHE_DIR", str(tmp_path / "env-store"))
    runner = CliRunner()
    assert runner.invoke(cli, ["cache", "where"]).output == (
        f"{tmp_path / 'env-store'}\t($BOTTLENECK_CACHE_DIR; not created yet)\n"
    )
    given = runner.invoke(cli, ["cache", "where", "--cache-dir", str(tmp_path), "--json"])
    assert '"from": "--cache-dir"' in given.output and '"exists": true' in given.output
    monkeypatch.delenv("BOTTLENECK_CACHE_DIR")
    monkeypatch.chdir(tmp_path)
    assert runner.invoke(cli, ["cache", "where"]).output.startswith(f"{tmp_path / 'caches'}\t")
