"""The ranking sample: stratified, grouped and seeded; the winner's full extraction reuses it."""

from __future__ import annotations

import numpy as np
import pytest
from bottleneck_transfer.errors import SourceError
from bottleneck_transfer.features.bases import load_base
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.features.extract import extract
from bottleneck_transfer.features.sources import open_source
from bottleneck_transfer.features.store import CacheStore
from bottleneck_transfer.rank.sample import SampleSize, extract_full, sample_source, store_extract
from PIL import Image
from rank_fixtures import class_images


@pytest.fixture
def npz(tmp_path):
    return class_images(tmp_path / "imgs.npz", per_class=(40, 20, 10), copies=3)


def _index(item_id: str) -> int:
    return int(item_id.split(":")[1])


def test_sample_keeps_each_class_share_and_is_seeded(tmp_path):
    source = open_source(class_images(tmp_path / "plain.npz", per_class=(40, 20, 10)))
    sample = sample_source(source, SampleSize.parse("4/class"), seed=1)
    labels = np.asarray([item.label for item in sample.items])
    # 4 per class on average in the classes' 4:2:1 ratio: round(4 * 3 * share)
    assert np.bincount(labels).tolist() == [7, 3, 2]
    ids = [item.id for item in sample.items]
    assert ids == sorted(ids, key=_index)  # the source's order
    assert {i.id for i in sample.items} <= {i.id for i in source.items}
    again = sample_source(source, SampleSize.parse("4/class"), seed=1)
    other = sample_source(source, SampleSize.parse("4/class"), seed=2)
    assert [i.id for i in again.items] == ids
    assert [i.id for i in other.items] != ids
    assert sample.options["sample"] == {"size": "4/class", "seed": 1}


def test_sample_keeps_copies_together(npz):
    source = open_source(npz)
    labels = np.asarray([item.label for item in source.items])
    copies = [(np.flatnonzero(labels == labels[r])[0], r) for r in range(len(labels) - 3, 70)]
    for seed in range(12):
        chosen = {_index(i.id) for i in sample_source(source, SampleSize(2), seed).items}
        for first, copy in copies:
            assert (first in chosen) == (copy in chosen)


def test_sample_keeps_declared_groups_whole(tmp_path):
    rows = ["path,label,patient"]
    for k in range(24):
        name = f"{k}.png"
        Image.fromarray(np.full((4, 4), 10 * k, np.uint8)).save(tmp_path / name)
        rows.append(f"{name},{'ab'[k % 2]},p{k // 4}")  # 6 patients of 4 images, both classes
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    source = open_source(tmp_path / "m.csv", groups="patient")
    for seed in range(6):
        chosen = sample_source(source, SampleSize(2), seed).items
        patients = {item.group for item in chosen}
        assert len(chosen) == 4 * len(patients)  # every image of each chosen patient


def test_sample_size_parsing():
    assert SampleSize.parse("50/class") == SampleSize(50, True)
    assert SampleSize.parse(" 2000 ") == SampleSize(2000, False)
    assert SampleSize.parse("2000").per_class_count(8) == 250
    for bad in ("0/class", "50/img", "-3", "fifty"):
        with pytest.raises(SourceError, match=r"N/class .* Received: sample="):
            SampleSize.parse(bad)


def test_sample_refuses_unlabelled_images(tmp_path):
    np.savez(tmp_path / "u.npz", images=np.zeros((4, 8, 8), np.uint8))
    with pytest.raises(SourceError, match=r"4 of .* are unlabelled"):
        sample_source(open_source(tmp_path / "u.npz"), SampleSize(1))


def test_full_extraction_reuses_the_sample_rows(npz, tmp_path, ran_images):
    source = open_source(npz)
    base = load_base("pixels", image_size=8, channels=1)
    sample = sample_source(source, SampleSize(3), seed=0)
    store = CacheStore(tmp_path / "store")
    first = store_extract(store, sample, base, progress=False)
    assert sum(ran_images) == len(sample) == first.rows
    assert store_extract(store, sample, base, progress=False).up_to_date  # reused, no run
    assert sum(ran_images) == len(sample)
    full = extract_full(source, base, tmp_path / "full.h5", first.path, progress=False)
    assert sum(ran_images) == len(source)  # only the images outside the sample ran
    assert full.update == {"reused": len(sample), "extracted": len(source) - len(sample),
                           "dropped": 0}  # fmt: skip
    fresh = extract(source, base, tmp_path / "fresh.h5", progress=False)
    with FeatureCache.open(full.path) as got, FeatureCache.open(fresh.path) as want:
        assert got.ids == want.ids
        assert got.fingerprint == want.fingerprint
        np.testing.assert_array_equal(got.labels, want.labels)
        np.testing.assert_array_equal(got.features, want.features)
