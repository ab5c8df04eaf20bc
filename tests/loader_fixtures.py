"""Helpers of the hostile-input tests (tests/hostile): the CLI in-process, its one-line
errors, hashes of a folder's files, crafted zips (a decompression bomb) and a real trained head."""

from __future__ import annotations

import hashlib
import struct
import zlib
from pathlib import Path

from bottleneck_transfer.cli.app import cli
from click.testing import CliRunner, Result


def run_cli(*args: object) -> Result:
    """``bottleneck ARGS`` in this process (no ``--debug``)."""
    return CliRunner().invoke(cli, [str(arg) for arg in args])


def one_line(result: Result, *names: str) -> str:
    """The single ``Error:`` line of a failed command; it names each of ``names``."""
    assert result.exit_code == 1, (result.exit_code, result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.output
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


def tree_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` by relative path (names of temporaries too)."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def stored_zip(path: Path, members: dict[str, bytes]) -> Path:
    """A zip holding ``members`` uncompressed (as skops writes its files)."""
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def zip_bomb(path: Path, name: str = "schema.json", claimed: int = 4_000_000_000) -> Path:
    """A zip whose one member is a real deflate stream of ``claimed`` zero bytes (~1 KB per
    MiB), written without producing the zeros: after a full flush, deflate restarts, so each
    MiB of zeros compresses to the same block."""
    mib = 2**20
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(bytes(mib)) + compressor.flush(zlib.Z_FULL_FLUSH)
    stream = block * (claimed // mib) + compressor.compress(bytes(claimed % mib))
    stream += compressor.flush()
    raw_name = name.encode()
    fields = (20, 0, 8, 0, 0x21, 0, len(stream), claimed, len(raw_name), 0)
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, *fields) + raw_name
    central = (
        struct.pack("<IH", 0x02014B50, 20)
        + struct.pack("<HHHHHIIIHH", *fields)
        + struct.pack("<HHHII", 0, 0, 0, 0, 0)
        + raw_name
    )
    end = struct.pack(
        "<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), len(local) + len(stream), 0
    )
    path.write_bytes(local + stream + central + end)
    return path


def trained_head(cache: Path, path: Path, spec: str = "logreg") -> Path:
    """A real head file: ``bottleneck train CACHE --head SPEC -o PATH``."""
    result = run_cli("train", cache, "--head", spec, "-o", path)
    assert result.exit_code == 0, result.output
    return path
