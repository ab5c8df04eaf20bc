"""The store lists and prunes the fit memo's fits and stored predictions and the pipeline's
exports beside its caches: by last use, only what it wrote, never through a link."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from bottleneck_transfer.atomic import atomic_path
from bottleneck_transfer.cli import cli
from bottleneck_transfer.features.cache.partial import writer_lock
from bottleneck_transfer.features.store import (
    EXPORT_MODELS,
    EXPORT_SUMMARY,
    EXPORTS_FOLDER,
    FITS_FOLDER,
    CacheStore,
    totals,
)
from bottleneck_transfer.heads.memo import FitMemo, prediction_key
from bottleneck_transfer.heads.training import LabeledData, fit_head
from click.testing import CliRunner
from heads_fixtures import blobs, write_cache

OLD = (1, 1)  # an mtime long ago: older than any age
DAY = 86400.0


def _export(store: CacheStore, digest: str, head: str = "logreg") -> Path:
    """An export folder as the pipeline writes it: the model and its summary."""
    folder = store.root / EXPORTS_FOLDER / digest
    with atomic_path(folder) as scratch:  # sealed with its manifest, as the pipeline's
        scratch.mkdir()
        (scratch / EXPORT_MODELS["keras"]).write_bytes(b"a .keras zip")
        (scratch / "model.labels.txt").write_text("a\nb\n")
        summary = {"head": head, "kind": "keras", "parity": None}
        (scratch / EXPORT_SUMMARY).write_text(json.dumps(summary))
    return folder


@pytest.fixture
def store(tmp_path):
    """A store with a cache, a memoized fit, its stored predictions and an export, beside a
    user's files and links named like the store's."""
    store = CacheStore(tmp_path / "store")
    X, y = blobs(n=40, dim=4, centers=2)
    data = LabeledData.from_arrays(X, y)
    memo = FitMemo.of_store(store)
    fit = fit_head("logreg", data, memo=memo)
    rows = np.arange(10)
    key = prediction_key(fit.key, data.key, rows)
    memo.save_predictions(key, {"seconds": 0.0}, predictions=fit.estimator.predict(X[rows]))
    fits, exports = store.root / FITS_FOLDER, store.root / EXPORTS_FOLDER
    own = {
        "cache": write_cache(store.path_for("sha256:" + "a" * 64), X, y),
        "fit": memo.root / f"{fit.key.split(':')[-1][:32]}.json",
        "predictions": memo.root / f"{key.split(':')[-1][:32]}.npz",
        "export": _export(store, "b" * 32),
    }
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "notes.json").write_text(json.dumps({"head": "mine"}))
    foreign = {
        "note": fits / "notes.txt",
        "link_fit": fits / ("c" * 32 + ".json"),
        "bad_npz": fits / ("d" * 32 + ".npz"),
        "link_export": exports / ("e" * 32),
        "thesis": _export(store, "f" * 32) / "thesis.tex",
        "readme": exports / "README.txt",
    }
    store.seal(own["cache"])
    foreign["note"].write_text("mine")
    foreign["link_fit"].symlink_to(elsewhere / "notes.json")
    foreign["bad_npz"].write_bytes(b"not an npz")
    foreign["link_export"].symlink_to(elsewhere)
    foreign["thesis"].write_text("four years of work")
    foreign["readme"].write_text("mine")
    for path in [*store.root.iterdir(), *fits.iterdir(), *exports.iterdir()]:
        os.utime(path, OLD, follow_symlinks=False)
    for folder in exports.iterdir():
        if folder.is_dir() and not folder.is_symlink():
            for path in folder.iterdir():
                os.utime(path, OLD)
    return store, data, own, foreign


def _kinds(store):
    return {(e["kind"], Path(e["path"]).name): e for e in store.entries()}


def test_ls_lists_caches_fits_predictions_and_exports_with_kind_and_what(store):
    store, _data, own, foreign = store
    entries = _kinds(store)
    assert entries[("cache", own["cache"].name)]["rows"] == 40
    fit = entries[("fit", own["fit"].name)]
    assert (fit["status"], fit["head"]) == ("complete", "logreg")
    assert fit["size_bytes"] == sum(
        own["fit"].with_suffix(s).stat().st_size for s in (".json", ".skops")
    )
    assert entries[("predictions", own["predictions"].name)]["rows"] == 10
    export = entries[("export", own["export"].name)]
    assert (export["status"], export["head"]) == ("complete", "logreg (keras)")
    for name in ("link_fit", "bad_npz", "link_export", "thesis"):
        path = foreign[name] if name != "thesis" else foreign[name].parent
        assert [e["status"] for e in store.entries() if e["path"] == str(path)] == ["not ours"]
    assert "notes.txt" not in str(entries) and "README.txt" not in str(entries)
    counts = {kind: total["count"] for kind, total in totals(store.entries()).items()}
    assert counts == {"cache": 1, "fit": 2, "predictions": 2, "export": 3}


def test_prune_goes_by_last_use_and_a_reuse_refreshes_it(store):
    store, data, own, foreign = store
    memo = FitMemo.of_store(store)
    assert fit_head("logreg", data, memo=memo).reused  # a reuse: its last use is now
    old = [own["cache"], own["predictions"], own["export"]]
    assert store.prune(older_than=DAY, dry_run=True).removed == old
    assert all(p.exists() for p in old)
    result = store.prune(older_than=DAY)
    assert result.removed == old
    kept = {path.name: why for path, why in result.kept}
    assert kept[foreign["link_fit"].name] == "a symbolic link: not followed"
    assert kept[foreign["link_export"].name] == "a symbolic link: not followed"
    assert "thesis.tex" in kept["f" * 32] and "not written by" in kept["d" * 32 + ".npz"]
    assert not any(p.exists() for p in old)
    assert own["fit"].exists() and own["fit"].with_suffix(".skops").exists()
    assert all(p.exists() or p.is_symlink() for p in foreign.values())
    assert (store.root.parent / "elsewhere" / "notes.json").exists()
    # Unused since: the fit goes, its metadata and its head file.
    for path in (own["fit"], own["fit"].with_suffix(".skops")):
        os.utime(path, OLD)
    assert store.prune(older_than=DAY).removed == [own["fit"]]
    assert not own["fit"].exists()
    assert not own["fit"].with_suffix(".skops").exists()
    assert all(p.exists() or p.is_symlink() for p in foreign.values())


def test_loading_predictions_records_a_use(store):
    store, _data, own, _foreign = store
    stored = FitMemo.of_store(store).load_predictions("sha256:" + own["predictions"].stem)
    assert len(stored["predictions"]) == 10
    assert own["predictions"].stat().st_mtime > DAY  # touched: no longer 1970
    assert own["predictions"] not in store.prune(older_than=DAY, dry_run=True).removed


def test_a_half_removed_fit_is_never_taken_for_a_stored_one(store, monkeypatch):
    store, data, own, _foreign = store
    unlink = Path.unlink

    def fail_on_heads(path, missing_ok=False):
        if path.suffix == ".skops":
            raise PermissionError(13, "Permission denied", str(path))
        unlink(path, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", fail_on_heads)
    result = store.prune(older_than=DAY)
    assert own["fit"] in dict(result.kept) and not own["fit"].exists()
    monkeypatch.undo()
    assert not fit_head("logreg", data, memo=FitMemo.of_store(store)).reused  # fitted again


def test_an_export_a_pipeline_holds_is_kept(store):
    store, _data, own, _foreign = store
    with writer_lock(own["export"]):
        result = store.prune(older_than=DAY)
    assert dict(result.kept)[own["export"]] == "in use: a running pipeline holds its lock"
    assert (own["export"] / EXPORT_SUMMARY).exists()


def test_cli_ls_and_prune(store):
    store, _data, own, foreign = store
    runner = CliRunner()
    listing = runner.invoke(cli, ["cache", "ls", "--cache-dir", str(store.root), "--long"])
    assert listing.exit_code == 0, listing.output
    lines = [line.split("\t") for line in listing.output.splitlines()]
    assert any(line[1] == "fit" and line[-1] == "logreg" for line in lines)
    assert any(line[1] == "export" and line[-1] == "logreg (keras)" for line in lines)
    assert any(line[1] == "predictions" and line[5] == "10 rows" for line in lines)
    assert [line[0].split()[:4] for line in lines if line[0].startswith("# total")] == [
        ["#", "total", "cache", "1"],
        ["#", "total", "fit", "2"],
        ["#", "total", "predictions", "2"],
        ["#", "total", "export", "3"],
    ]
    as_json = runner.invoke(cli, ["cache", "ls", "--cache-dir", str(store.root), "--json"])
    assert {e["kind"] for e in json.loads(as_json.output)} == {
        "cache",
        "fit",
        "predictions",
        "export",
    }
    args = ["cache", "prune", "--cache-dir", str(store.root), "--older-than", "30d"]
    dry = runner.invoke(cli, [*args, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert f"would remove {own['export']}" in dry.output and "4 would remove" in dry.output
    assert own["export"].exists()
    done = runner.invoke(cli, args)
    assert f"removed {own['fit']}" in done.output and "4 removed, 4 kept" in done.output
    assert sorted(p.name for p in (store.root / FITS_FOLDER).iterdir()) == sorted(
        [foreign["note"].name, foreign["link_fit"].name, foreign["bad_npz"].name]
    )


def test_a_linked_fits_or_exports_folder_is_not_read(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / ("a" * 32 + ".npz")).write_bytes(b"someone's")
    store = CacheStore(tmp_path / "store")
    store.root.mkdir()
    for folder in (FITS_FOLDER, EXPORTS_FOLDER):
        (store.root / folder).symlink_to(elsewhere)
    entries = store.entries()
    assert [(e["kind"], e["status"]) for e in entries] == [
        ("fit", "not ours"),
        ("export", "not ours"),
    ]
    assert len(store.prune(older_than=0).kept) == 2
    assert (elsewhere / ("a" * 32 + ".npz")).exists()
