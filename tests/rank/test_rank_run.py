"""``bottleneck rank-bases`` and a spec's [rank]: rank, extract the winner, compare heads."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest
from bottleneck_transfer.cli import cli
from bottleneck_transfer.features.bases import load_base
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.pipeline.run import run_pipeline
from bottleneck_transfer.pipeline.spec import SpecError, load_spec
from click.testing import CliRunner
from rank_fixtures import class_images

SPEC = """
[data]
train = "imgs.npz"
val_split = 0.25

[rank]
candidates = ["pixels image_size=8", {{ name = "pixels", image_size = 2 }}]
sample = "{sample}"
cv = 3

[heads]
use = ["logreg"]

[export]
predict = 0

[outputs]
dir = "runs"
"""


@pytest.fixture
def npz(tmp_path):
    return class_images(tmp_path / "imgs.npz", per_class=(16, 16, 16))


def _spec(tmp_path: Path, sample: str = "10/class") -> Path:
    path = tmp_path / "spec.toml"
    path.write_text(SPEC.format(sample=sample))
    return path


def test_spec_rank_round_trip(npz, tmp_path):
    spec = load_spec(_spec(tmp_path))
    assert spec["base"]["name"] is None
    assert spec["rank"] == {
        "candidates": ["pixels image_size=8", {"name": "pixels", "image_size": 2}],
        "sample": "10/class",
        "cv": 3,
        "baselines": ["random-base", "raw-pixels"],
    }
    again = tmp_path / "again.toml"
    again.write_text(
        _spec(tmp_path).read_text().replace('"10/class"', json.dumps(spec["rank"]["sample"]))
    )
    assert load_spec(again) == spec


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('sample = "10/class"', 'sample = "6/img"'), 'rank.sample: must be "N/class"'),
        (("cv = 3", "cv = 1"), "rank.cv: must be >= 2"),
        (("[rank]", '[base]\nname = "pixels"\n[rank]'), "base.name: give the base's name or"),
        (('"pixels image_size=8", ', '"pixels colour=8", '), "'colour=8' is not a setting"),
        (('"pixels image_size=8", ', '"m.keras", '), "rank.candidates: model file not found"),
    ],
)
def test_spec_rank_errors_name_the_key(npz, tmp_path, change, message):
    path = _spec(tmp_path)
    path.write_text(path.read_text().replace(*change))
    with pytest.raises(SpecError, match=message):
        load_spec(path)


@pytest.mark.slow
def test_run_ranks_then_extracts_the_winner_from_its_sample(npz, tmp_path, ran_images, monkeypatch):
    from bottleneck_transfer.pipeline import run as run_module

    built = []
    real = run_module.load_base
    monkeypatch.setattr(run_module, "load_base", lambda *a, **k: built.append(a) or real(*a, **k))
    record = run_pipeline(_spec(tmp_path), cache_dir=tmp_path / "store", echo=lambda _: None)
    assert built == []  # the ranking's winner is extracted with the base it built
    ranking = record["rank"]
    assert ranking["winner"] == "pixels image_size=8"  # 2x2 pixels lose the pattern
    assert [r["base"] for r in ranking["ranking"]] == ["pixels image_size=8", "pixels image_size=2"]
    sample_rows = ranking["sample"]["images"]
    train = next(e for e in record["extractions"] if e["role"] == "main" and e["split"] == "train")
    # each candidate ran the sample once (its raw-pixel baseline is itself: reused), the
    # winner's train cache only the images outside its sample, then the 12 test images
    assert sum(ran_images) == 2 * sample_rows + (train["rows"] - sample_rows) + 12
    assert record["compare"]["winner"] == "logreg"
    assert (Path(record["run_dir"]) / "rank" / "report.html").is_file()


@pytest.mark.slow
def test_cli_rank_bases_json_and_report(npz, tmp_path):
    out = tmp_path / "ranking"
    result = CliRunner().invoke(
        cli,
        [
            "rank-bases", str(npz), "--bases", "pixels,pixels image_size=2", "--image-size",
            "8", "--sample", "30", "--cv", "3", "--baseline", "raw-pixels", "--cache-dir",
            str(tmp_path / "store"), "-o", str(out), "--json",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    got = json.loads(result.output)
    assert got["sample"] == {"size": "30", "seed": 0, "images": 30, "collection_images": 48}
    assert got["winner"] == "pixels"
    assert got["command"].endswith(
        f"--image-size 8 -o {out / 'features.h5'} --update"  # pooling: the kind's default
    )
    assert {"logme", "hscore", "probe", "cost", "vs_best"} <= set(got["ranking"][1])
    assert (out / "features.h5").is_file() and (out / "cost_accuracy.png").is_file()


@pytest.mark.slow
def test_printed_command_completes_the_winner_cache_from_its_sample(npz, tmp_path, ran_images):
    out = tmp_path / "ranking"
    args = ["rank-bases", str(npz), "--bases", "pixels image_size=8,pixels image_size=2"]
    args += ["--sample", "24", "--cv", "3", "--baseline", "raw-pixels", "--runtime", "auto"]
    result = CliRunner().invoke(cli, [*args, "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    got = json.loads(result.output)
    sample = got["sample"]["images"]
    assert sum(ran_images) == 2 * sample  # each candidate once, each its own raw pixels
    with FeatureCache.open(got["ranking"][0]["sample_cache"]) as winner:  # ran as asked
        assert winner.provenance["extraction"]["runtime"]["chosen_by"] == "auto"
    command = shlex.split(got["command"])
    assert command[:3] == ["bottleneck", "extract", str(npz)]
    assert command[-5:] == ["--runtime", "auto", "-o", str(out / "features.h5"), "--update"]
    ran_images.clear()
    done = CliRunner().invoke(cli, command[1:])
    assert done.exit_code == 0, done.output
    assert sum(ran_images) == 48 - sample  # only the images outside the sample
    fresh = tmp_path / "fresh.h5"
    assert CliRunner().invoke(cli, [*command[1:-3], "-o", str(fresh)]).exit_code == 0
    with FeatureCache.open(out / "features.h5") as full, FeatureCache.open(fresh) as want:
        assert full.ids == want.ids and full.fingerprint == want.fingerprint
        updated = full.provenance["extraction"]["update"]
        assert updated == {"reused": sample, "extracted": 48 - sample, "dropped": 0}
        np.testing.assert_array_equal(full.features, want.features)


def _tiny_model(path: Path) -> Path:
    """A small trained-looking model file on 8x8 RGB images (its weights are not random)."""
    import keras

    keras.utils.set_random_seed(1)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3)(keras.layers.Rescaling(1 / 255)(inputs))
    x = keras.layers.Dense(24, name="bottleneck")(keras.layers.Flatten()(x))
    keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x)).save(path)
    return path


@pytest.mark.slow
def test_rank_extracts_and_probes_each_shared_baseline_once(npz, tmp_path, ran_images, monkeypatch):
    from bottleneck_transfer.rank import probe as probe_module
    from bottleneck_transfer.rank.ranking import rank_bases

    fits = []
    real = probe_module.ridge_predictions
    monkeypatch.setattr(
        probe_module, "ridge_predictions", lambda X, *a: fits.append(X.shape[1]) or real(X, *a)
    )
    model = _tiny_model(tmp_path / "m.keras")
    ranking = rank_bases(
        npz, [str(model), "pixels image_size=8"], sample="10/class", cv=3,
        cache_dir=tmp_path / "store", progress=False,
    )  # fmt: skip
    rows = ranking.sample["images"]
    # the model's sample and its random-weights version; the 8x8 pixels once: the
    # candidate's cache is also the model's raw-pixel baseline and its own
    assert sum(ran_images) == 3 * rows
    # ridge fits: the model, its random version, the pixels once (for both candidates)
    assert sorted(fits) == [24, 24, 192]
    by_label = {r.label: r for r in ranking.results}
    pixels_probe = by_label["pixels image_size=8"].probe
    model_probe = by_label[str(model)].probe
    assert model_probe.baselines["raw-pixels"] == pixels_probe.baselines["raw-pixels"]
    assert model_probe.baselines["raw-pixels"]["accuracy"] == pixels_probe.accuracy
    assert set(model_probe.baselines) == {"random-base", "raw-pixels"}
    weights = sum(np.asarray(w).nbytes for w in load_base(model).model.weights)
    assert by_label[str(model)].cost.weights_bytes == weights


def test_cli_rank_bases_needs_candidates(npz):
    result = CliRunner().invoke(cli, ["rank-bases", str(npz)])
    assert result.exit_code == 1
    assert "Error: no candidate base: give --bases" in result.output
