"""Source kinds beyond folders: each gives the class folder's features for the same images
(rows matched by id, relative comparison), and bad members are recorded by id, never fatal."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from bottleneck_transfer.errors import ImageError, SourceError
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.features.extract import extract
from bottleneck_transfer.features.sources import open_source, reopen_source
from bottleneck_transfer.features.sources.table import TableRows
from feature_checks import assert_features_close
from loader_fixtures import run_cli

PIXELS = {"weights": None, "image_size": 16, "batch_size": 4, "progress": False}


def _key(item_id: str) -> str:
    return item_id.rsplit(".", 1)[0]


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_shard(folder: Path, out: Path, extra: dict[str, bytes] | None = None) -> Path:
    """The class folder's images as WebDataset samples: ``{key}.{ext}`` and ``{key}.cls``."""
    source = open_source(folder)
    with tarfile.open(out, "w") as tar:
        for item in source.items:
            _add(tar, item.id, item.path.read_bytes())
            _add(tar, _key(item.id) + ".cls", source.class_names[item.label].encode())
        for name, data in (extra or {}).items():
            _add(tar, name, data)
    return out


def _by_id(path: Path, key=lambda i: i) -> dict[str, tuple[np.ndarray, int]]:
    with FeatureCache.open(path) as cache:
        names = cache.class_names
        return {
            key(i): (row, names[label])
            for i, row, label in zip(cache.ids, cache.features, cache.labels, strict=True)
        }


def test_a_tar_shard_gives_the_class_folders_features(photo_folder, tmp_path):
    shard = write_shard(photo_folder, tmp_path / "photos.tar")
    folder = extract(photo_folder, "pixels", tmp_path / "folder.h5", **PIXELS)
    tar = extract(shard, "pixels", tmp_path / "tar.h5", **PIXELS)
    assert tar.rows == folder.rows == 9
    want, got = _by_id(folder.path, _key), _by_id(tar.path)
    assert sorted(got) == sorted(want)
    for key, (row, name) in want.items():
        assert got[key][1] == name
        assert_features_close(got[key][0], row)
    with FeatureCache.open(tar.path) as cache:
        assert cache.provenance["source"]["kind"] == "webdataset"


def test_an_undecodable_member_is_failed_by_its_key_and_skipped(photo_folder, tmp_path):
    extra = {"objects/broken.jpg": b"not a jpeg", "objects/broken.cls": b"objects"}
    shard = write_shard(photo_folder, tmp_path / "photos.tar", extra)
    result = extract(shard, "pixels", tmp_path / "tar.h5", **PIXELS)
    assert result.rows == 9
    assert [i for i, _ in result.failed] == ["objects/broken"]
    with pytest.raises(ImageError, match="objects/broken"):
        extract(shard, "pixels", tmp_path / "strict.h5", strict=True, **PIXELS)


def test_shards_by_brace_pattern_and_a_truncated_shard_is_one_failed_item(photo_folder, tmp_path):
    write_shard(photo_folder, tmp_path / "s-000.tar")
    data = (tmp_path / "s-000.tar").read_bytes()
    (tmp_path / "s-001.tar").write_bytes(b"\x00" * 10 + data[700:1500])
    source = open_source(str(tmp_path / "s-{000..001}.tar"))
    assert source.kind == "webdataset"
    assert len(source) == 10
    assert source.items[-1].id == "s-001.tar" and "cannot list" in source.items[-1].error
    result = extract(source, "pixels", tmp_path / "c.h5", **PIXELS)
    assert result.rows == 9 and [i for i, _ in result.failed] == ["s-001.tar"]


def test_arrays_in_memory_give_the_npz_files_features(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 20, 20, 3), dtype=np.uint8)
    labels = np.arange(12) % 3
    np.savez(tmp_path / "a.npz", images=images, labels=labels)
    from bottleneck_transfer.features.sources import open_arrays

    memory = open_arrays(images, labels, class_names=["a", "b", "c"])
    assert memory.kind == "arrays" and memory.class_names == ["a", "b", "c"]
    got = extract(memory, "pixels", tmp_path / "m.h5", **PIXELS)
    want = extract(tmp_path / "a.npz", "pixels", tmp_path / "f.h5", **PIXELS)
    with FeatureCache.open(got.path) as a, FeatureCache.open(want.path) as b:
        assert a.ids == b.ids == [f"array:{i}" for i in range(12)]
        np.testing.assert_array_equal(a.labels, b.labels)
        assert_features_close(a.features, b.features)
    same = open_arrays(images, labels, class_names=["a", "b", "c"])
    assert extract(same, "pixels", got.path, **PIXELS).up_to_date


def _hf_table(folder: Path, **extra_rows: bytes | None):
    """The class folder's images as a Hugging Face ``datasets`` table: an ``image`` struct of
    bytes and path, a ``label`` ClassLabel whose names are in the schema metadata."""
    pa = pytest.importorskip("pyarrow")
    source = open_source(folder)
    images = [{"bytes": item.path.read_bytes(), "path": item.id} for item in source.items]
    labels = [item.label for item in source.items]
    for name, data in extra_rows.items():
        images.append({"bytes": data, "path": name})
        labels.append(0)
    features = {
        "image": {"_type": "Image"},
        "label": {"names": source.class_names, "_type": "ClassLabel"},
    }
    meta = {b"huggingface": json.dumps({"info": {"features": features}}).encode()}
    table = pa.table({"image": images, "label": pa.array(labels, pa.int64())})
    return table.replace_schema_metadata(meta)


def _same_features(got: Path, want: Path, key=lambda i: i) -> None:
    """``got`` holds ``want``'s rows (matched by id) with its class names and features."""
    mine, theirs = _by_id(got), _by_id(want, key)
    assert sorted(mine) == sorted(theirs)
    for item_id, (row, name) in theirs.items():
        assert mine[item_id][1] == name
        assert_features_close(mine[item_id][0], row)


def test_a_hugging_face_parquet_table_gives_the_class_folders_features(photo_folder, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(_hf_table(photo_folder), tmp_path / "train.parquet", row_group_size=4)
    source = open_source(tmp_path / "train.parquet")
    assert source.kind == "table" and source.class_names == ["animals", "objects", "people"]
    assert {item.member[0] for item in source.items} == {0, 1, 2}  # read by row group
    table = extract(source, "pixels", tmp_path / "table.h5", **PIXELS)
    folder = extract(photo_folder, "pixels", tmp_path / "folder.h5", **PIXELS)
    assert table.rows == 9
    _same_features(table.path, folder.path)  # ids: the rows' paths
    again = extract(tmp_path / "train.parquet", "pixels", table.path, **PIXELS)
    assert again.up_to_date


def test_an_arrow_table_with_other_columns_and_string_labels(photo_folder, tmp_path):
    pa = pytest.importorskip("pyarrow")
    source = open_source(photo_folder)
    table = pa.table(
        {
            "img": [item.path.read_bytes() for item in source.items],
            "species": [source.class_names[item.label] for item in source.items],
        }
    )
    with pa.ipc.new_file(tmp_path / "photos.arrow", table.schema) as writer:
        for batch in table.to_batches(max_chunksize=5):
            writer.write_batch(batch)
    with pytest.raises(SourceError, match=r"no .image. image column .*img, species.*--image-col"):
        open_source(tmp_path / "photos.arrow")
    with pytest.raises(SourceError, match="'species' is string, not image bytes"):
        open_source(tmp_path / "photos.arrow", image_column="species")
    arrow = open_source(tmp_path / "photos.arrow", image_column="img", label_column="species")
    assert [item.id for item in arrow.items] == [f"photos.arrow#{k}" for k in range(9)]
    assert arrow.class_names == source.class_names
    again = reopen_source(arrow.describe())  # what every cluster worker does
    assert again.items == arrow.items and again.class_names == arrow.class_names
    got = extract(arrow, "pixels", tmp_path / "arrow.h5", **PIXELS)
    folder = extract(photo_folder, "pixels", tmp_path / "folder.h5", **PIXELS)
    order = {item.id: f"photos.arrow#{k}" for k, item in enumerate(source.items)}
    _same_features(got.path, folder.path, order.get)
    with pytest.raises(SourceError, match="--image-column names a column of a Parquet/Arrow"):
        open_source(photo_folder, image_column="img")


def test_undecodable_table_rows_are_failed_by_id_and_skipped(photo_folder, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    table = _hf_table(photo_folder, **{"bad/junk.png": b"not a png", "bad/empty.png": None})
    pq.write_table(table, tmp_path / "t.parquet", row_group_size=3)
    result = extract(tmp_path / "t.parquet", "pixels", tmp_path / "t.h5", **PIXELS)
    assert result.rows == 9
    failed = dict(result.failed)
    assert sorted(failed) == ["bad/empty.png", "bad/junk.png"]
    assert "no image bytes" in failed["bad/empty.png"]
    with pytest.raises(ImageError, match=r"bad/junk\.png"):
        extract(tmp_path / "t.parquet", "pixels", tmp_path / "s.h5", strict=True, **PIXELS)


def _to_memory(folder: Path, root: str) -> None:
    fsspec = pytest.importorskip("fsspec")
    fs = fsspec.filesystem("memory")
    for path in folder.rglob("*"):
        if path.is_file():
            fs.pipe(f"{root}/{path.relative_to(folder).as_posix()}", path.read_bytes())


def _write_jsonl(folder: Path, out: Path) -> Path:
    """The class folder's images as a JSON-lines manifest (labels by name)."""
    source = open_source(folder)
    rows = [{"path": i.id, "label": source.class_names[i.label]} for i in source.items]
    out.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return out


def test_a_json_lines_manifest_gives_the_class_folders_features(photo_folder, tmp_path):
    folder = Path(shutil.copytree(photo_folder, tmp_path / "photos"))
    manifest = _write_jsonl(folder, folder / "m.jsonl")
    source = open_source(manifest)
    assert source.kind == "jsonl" and source.class_names == ["animals", "objects", "people"]
    got = extract(manifest, "pixels", tmp_path / "jsonl.h5", **PIXELS)
    want = extract(folder, "pixels", tmp_path / "folder.h5", **PIXELS)
    assert got.rows == 9
    _same_features(got.path, want.path)


@pytest.mark.parametrize(
    ("line", "message"),
    [("[1, 2]", "line 2: not a JSON object"), ('{"path": ', "line 2: not valid JSON")],
)
def test_a_bad_json_line_is_one_error_naming_its_line(photo_folder, tmp_path, line, message):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"path": "a.jpg"}\n' + line + "\n")
    with pytest.raises(SourceError, match=message) as info:
        open_source(manifest)
    assert str(manifest) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["", "m.csv", "m.jsonl", "p.tar", "p.parquet"])
def test_fsspec_urls_give_the_local_sources_features(photo_folder, tmp_path, name):
    pq = pytest.importorskip("pyarrow.parquet")
    folder = Path(shutil.copytree(photo_folder, tmp_path / "photos"))
    source = open_source(folder)
    rows = [f"{i.id},{source.class_names[i.label]}\n" for i in source.items]
    (folder / "m.csv").write_text("path,label\n" + "".join(rows))
    _write_jsonl(photo_folder, folder / "m.jsonl")
    write_shard(photo_folder, folder / "p.tar")
    pq.write_table(_hf_table(photo_folder), folder / "p.parquet")
    root = f"/photos-{name or 'folder'}"
    _to_memory(folder, root)
    url = f"memory://{root}/{name}".rstrip("/")
    remote = open_source(url)
    assert remote.root.startswith("memory://") and remote.kind == open_source(folder / name).kind
    got = extract(remote, "pixels", tmp_path / "url.h5", **PIXELS)
    want = extract(folder / name, "pixels", tmp_path / "local.h5", **PIXELS)
    with FeatureCache.open(got.path) as a, FeatureCache.open(want.path) as b:
        assert a.ids == b.ids and a.class_names == b.class_names
        np.testing.assert_array_equal(a.labels, b.labels)
        assert_features_close(a.features, b.features)
        assert a.provenance["source"]["options"]["spec"] == url


def test_a_file_url_is_the_local_path(photo_folder, tmp_path):
    source = open_source(f"file://{photo_folder}")
    assert source.root == str(photo_folder.resolve()) and source.reader is None
    assert [i.id for i in source.items] == [i.id for i in open_source(photo_folder).items]


def test_the_source_kind_is_forced_by_name_and_an_unknown_one_lists_the_kinds(
    photo_folder, tmp_path
):
    shard = write_shard(photo_folder, tmp_path / "photos.bin")
    with pytest.raises(SourceError, match="cannot tell what"):
        open_source(shard)
    forced = open_source(shard, source_kind="webdataset")
    assert forced.kind == "webdataset" and len(forced) == 9
    assert reopen_source(forced.describe()).items == forced.items
    result = run_cli("extract", shard, "--base", "pixels", "--source", "nope", "-o", "x.h5")
    assert result.exit_code != 0
    line = result.output.strip().splitlines()[-1]
    assert "unknown source kind; valid: fashion-mnist, text, table, folder, csv" in line
    assert "source='nope'" in line


def test_a_spec_names_the_source_kind(photo_folder, tmp_path):
    from bottleneck_transfer.pipeline.run import _sources
    from bottleneck_transfer.pipeline.spec import SpecError, load_spec

    write_shard(photo_folder, tmp_path / "photos.bin")
    body = (
        '[data]\ntrain = "photos.bin"\nsource = "{}"\n'
        '[base]\nname = "mobilenet_v2"\n[heads]\ncv = 3\n'
    )
    (tmp_path / "bad.toml").write_text(body.format("shards"))
    with pytest.raises(SpecError, match="valid: fashion-mnist, text, table, folder"):
        load_spec(tmp_path / "bad.toml")
    (tmp_path / "spec.toml").write_text(body.format("webdataset"))
    train = _sources(load_spec(tmp_path / "spec.toml"))["train"]
    assert train.kind == "webdataset" and len(train) == 9
    assert train.options["kind"] == "webdataset"


def test_a_table_extraction_resumes_where_it_stopped(photo_folder, tmp_path, monkeypatch):
    from bottleneck_transfer.features import loop, runtimes
    from bottleneck_transfer.features.cache.partial import partial_path, partial_progress

    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(_hf_table(photo_folder), tmp_path / "t.parquet", row_group_size=4)
    options = {**PIXELS, "batch_size": 2}
    reference = extract(tmp_path / "t.parquet", "pixels", tmp_path / "ref.h5", **options)
    real, calls = runtimes.BatchRunner.__call__, []

    def crash_on_the_third(self, pixels):
        calls.append(1)
        if len(calls) > 2:
            raise RuntimeError("simulated crash")
        return real(self, pixels)

    monkeypatch.setattr(loop, "COMMIT_SECONDS", 0.0)
    monkeypatch.setattr(runtimes.BatchRunner, "__call__", crash_on_the_third)
    out = tmp_path / "t.h5"
    with pytest.raises(RuntimeError, match="simulated"):
        extract(tmp_path / "t.parquet", "pixels", out, **options)
    assert partial_progress(partial_path(out))["items_done"] == 4
    monkeypatch.undo()
    result = extract(tmp_path / "t.parquet", "pixels", out, **options)
    assert result.resumed_from == 4
    _same_features(out, reference.path)


def test_a_folder_of_tables_is_one_source_and_an_image_folder_stays_a_folder(
    photo_folder, tmp_path
):
    pq = pytest.importorskip("pyarrow.parquet")
    table = _hf_table(photo_folder)
    (tmp_path / "tables").mkdir()
    pq.write_table(table.slice(0, 5), tmp_path / "tables" / "a.parquet")
    pq.write_table(
        table.slice(5)
        .drop_columns(["image"])
        .append_column("image", table.slice(5).column("image").combine_chunks().field("bytes")),
        tmp_path / "tables" / "b.parquet",
    )
    both = open_source(tmp_path / "tables")
    assert both.kind == "table" and len(both) == 9
    assert [i.id for i in both.items] == [f"a.parquet#{k}" for k in range(5)] + [
        f"b.parquet#{k}" for k in range(4)
    ]  # b's rows have no path: every id is FILE#ROW
    folder = Path(shutil.copytree(photo_folder, tmp_path / "photos"))
    pq.write_table(table, folder / "features.parquet")
    assert open_source(folder).kind == "class-folders"


def test_an_arrow_stream_is_read_forward_and_reopened_to_go_back(photo_folder, tmp_path):
    pa = pytest.importorskip("pyarrow")
    table = _hf_table(photo_folder)  # `datasets.save_to_disk` writes the IPC stream format
    with pa.ipc.new_stream(tmp_path / "data.arrow", table.schema) as writer:
        for batch in table.to_batches(max_chunksize=3):
            writer.write_batch(batch)
    source = open_source(tmp_path / "data.arrow")
    assert source.class_names == ["animals", "objects", "people"]
    want = {item.id: item.path.read_bytes() for item in open_source(photo_folder).items}
    order = [*source.items, source.items[0], source.items[-1]]  # then back to the start
    assert [source.content(item) for item in order] == [want[item.id] for item in order]
    one_batch = TableRows("image", keep=1)  # nothing kept to go back to: the stream reopens
    assert [one_batch.read(item) for item in order] == [want[item.id] for item in order]
