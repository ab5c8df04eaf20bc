"""The one atomic write (bottleneck_transfer.atomic)."""

from __future__ import annotations

import os

import pytest
from bottleneck_transfer import atomic
from bottleneck_transfer.atomic import atomic_path, atomic_write_bytes, atomic_write_text
from bottleneck_transfer.entries import MANIFEST_NAME


class Boom(RuntimeError):
    pass


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(atomic.TEMP_SUFFIX))


def test_file_appears_whole_and_parent_is_created(tmp_path):
    out = tmp_path / "sub" / "a.bin"
    assert atomic_write_bytes(out, b"abc") == out
    assert out.read_bytes() == b"abc"
    atomic_write_text(out, "héllo")
    assert out.read_text(encoding="utf-8") == "héllo"
    assert _leftovers(out.parent) == []


def test_temp_path_keeps_the_final_name(tmp_path):
    with atomic_path(tmp_path / "model.keras") as tmp:
        assert tmp.name == "model.keras"
        assert tmp.parent.parent == tmp_path
        tmp.write_bytes(b"x")


def test_failure_midway_leaves_old_file_and_no_temp(tmp_path):
    out = tmp_path / "a.txt"
    out.write_text("old")
    with pytest.raises(Boom), atomic_path(out) as tmp, open(tmp, "w") as handle:
        handle.write("half")
        handle.flush()
        raise Boom
    assert out.read_text() == "old"
    assert _leftovers(tmp_path) == []


def test_failure_midway_leaves_nothing_at_a_new_path(tmp_path):
    out = tmp_path / "new.txt"
    with pytest.raises(Boom), atomic_path(out) as tmp:
        tmp.write_text("half")
        raise Boom
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_failure_in_the_rename_cleans_the_temp(tmp_path, monkeypatch):
    out = tmp_path / "a.txt"

    def fail(*args):
        raise OSError("disk gone")

    monkeypatch.setattr(atomic.os, "replace", fail)
    with pytest.raises(OSError, match="disk gone"):
        atomic_write_text(out, "x")
    assert list(tmp_path.iterdir()) == []


def test_nothing_written_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError), atomic_path(tmp_path / "a.txt"):
        pass
    assert list(tmp_path.iterdir()) == []


def test_folder_written_and_replaced(tmp_path):
    out = tmp_path / "export"
    for version in ("1", "2"):
        with atomic_path(out) as tmp:
            tmp.mkdir()
            (tmp / "model.json").write_text(version)
            (tmp / "sub").mkdir()
            (tmp / "sub" / "w.bin").write_bytes(b"w")
    assert (out / "model.json").read_text() == "2"
    assert (out / "sub" / "w.bin").read_bytes() == b"w"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


def test_folder_failure_keeps_the_old_folder(tmp_path):
    out = tmp_path / "export"
    out.mkdir()
    (out / "model.json").write_text("old")
    with pytest.raises(Boom), atomic_path(out) as tmp:
        tmp.mkdir()
        (tmp / "model.json").write_text("half")
        raise Boom
    assert [p.name for p in out.iterdir()] == ["model.json"]
    assert (out / "model.json").read_text() == "old"
    assert _leftovers(tmp_path) == []


def test_file_and_folder_are_fsynced(tmp_path, monkeypatch):
    synced = []
    real = os.fsync

    def spy(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(atomic.os, "fsync", spy)
    with atomic_path(tmp_path / "d") as tmp:
        tmp.mkdir()
        (tmp / "f").write_text("x")
    names = [os.path.basename(p) for p in synced]
    after = names[names.index("f") :]
    assert MANIFEST_NAME in names and "d" in after[1:-1]  # the file, then its folder
    assert synced[-1] == str(tmp_path)  # the parent, after the rename


def test_a_file_never_replaces_a_folder(tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep").write_text("k")
    with pytest.raises(OSError):
        atomic_write_text(out, "x")
    assert (out / "keep").read_text() == "k"
    assert _leftovers(tmp_path) == []
