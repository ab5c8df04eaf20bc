"""Pipeline specs: validation errors with key and line, cache reuse, invalidation, dry run."""

from __future__ import annotations

import html
import json
import os
from pathlib import Path

import pytest
from bottleneck_transfer.cli import cli
from bottleneck_transfer.entries import EntryManifest
from bottleneck_transfer.features.cache.partial import PARTIAL_MARKER
from bottleneck_transfer.features.store import CacheStore, parse_age
from bottleneck_transfer.heads.compare import NO_HELP
from bottleneck_transfer.pipeline.run import run_pipeline
from bottleneck_transfer.pipeline.spec import SpecError, load_spec
from click.testing import CliRunner
from photo_fixtures import write_photo_crops
from PIL import Image


@pytest.fixture
def photos(tmp_path):
    """train/ and test/ class folders of real photo crops."""
    return write_photo_crops(tmp_path, {"train": 6, "test": 3}, (15, 10))


def _write_spec(tmp_path, body: str):
    path = tmp_path / "spec.toml"
    path.write_text(body)
    return path


SPEC = """
[data]
train = "photos/train"
test = "photos/test"

[base]
name = "mobilenet_v2"
weights = "none"
image_size = 32
pooling = "{pooling}"

[heads]
use = ["logreg", "knn"]

[baselines]
use = ["raw-pixels"]

[export]
predict = 4

[outputs]
dir = "runs"
"""


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            '[data]\ntrain = "x"\n[base]\nname = "resnet50"\ncolour = 1\n',
            ":5: base.colour: unknown key",
        ),
        ('[dta]\ntrain = "x"\n', ":1: [dta]: unknown section"),
        (
            '[data]\ntrain = "photos/train"\ntest = "photos/test"\n[base]\nname = 5\n',
            ":5: base.name: must be str",
        ),
        (
            '[data]\ntrain = "photos/train"\ntest = "photos/test"\n[base]\nname = "resnet50"\n'
            '[heads]\nuse = ["logreg", "forest"]\n',
            ":7: heads.use: unknown value(s) ['forest']",
        ),
        (
            '[data]\ntrain = "nowhere"\ntest = "photos/test"\n[base]\nname = "resnet50"\n',
            ":2: data.train: source not found",
        ),
        (
            '[data]\ntrain = "photos/train"\n[base]\nname = "resnet50"\n',
            "give a 'test' source or set heads.cv",
        ),
        (
            '[data]\ntrain = "photos/train"\ntest = "photos/test"\n',
            "[base]: missing required key 'name'",
        ),
        (
            '[data]\ntrain = "photos/train"\ntest = "photos/test"\n[base]\nname = "m.keras"\n',
            "model file not found",
        ),
        (
            '[data]\ntrain = "photos/train"\ntest = "photos/test"\n[base]\nname = "x"\n'
            "[extract]\nbatch_size = 0\n",
            ":7: extract.batch_size: must be > 0",
        ),
        ("[data\n", "not valid TOML"),
    ],
)
def test_spec_errors_name_key_and_line(tmp_path, photos, body, message):
    path = _write_spec(tmp_path, body)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert str(path) in str(info.value)
    assert message in str(info.value)


def test_relative_paths_resolve_against_the_spec(tmp_path, photos):
    spec = load_spec(_write_spec(tmp_path, SPEC.format(pooling="avg")))
    assert spec["data"]["train"] == str(photos / "train")
    assert spec["outputs"]["dir"] == str(tmp_path / "runs")
    assert spec["heads"]["use"] == ["logreg", "knn"]
    assert spec["extract"]["batch_size"] is None  # "auto": extract sizes it for the device
    assert spec["export"]["head"] == "best"


def _extracted(record):
    return sorted((e["role"], e["split"]) for e in record["extractions"] if not e["cached"])


def test_second_run_reuses_and_changes_invalidate_only_dependents(tmp_path, photos):
    spec = _write_spec(tmp_path, SPEC.format(pooling="avg"))
    store = tmp_path / "store"
    dry = run_pipeline(spec, cache_dir=store, dry_run=True, echo=lambda _: None)
    assert _extracted(dry) == [
        ("main", "test"),
        ("main", "train"),
        ("raw-pixels", "test"),
        ("raw-pixels", "train"),
    ]
    first = run_pipeline(spec, cache_dir=store, progress=False, echo=lambda _: None)
    assert _extracted(first) == _extracted(dry)
    assert [e["cache"] for e in first["extractions"]] == [e["cache"] for e in dry["extractions"]]
    assert len(list(store.glob("*.h5"))) == 4
    mtimes = {p: p.stat().st_mtime_ns for p in store.glob("*.h5")}
    second = run_pipeline(spec, cache_dir=store, progress=False, echo=lambda _: None)
    assert _extracted(second) == []
    dry_again = run_pipeline(spec, cache_dir=store, dry_run=True, echo=lambda _: None)
    ran = [
        {k: v for k, v in e.items() if k not in ("fingerprint", "rows")}
        for e in second["extractions"]
    ]
    assert dry_again["extractions"] == ran
    assert {p: p.stat().st_size for p in store.glob("*.h5")} == {
        p: p.stat().st_size for p in mtimes
    }
    # A changed test image invalidates the test caches only.
    image = photos / "test" / "cup" / "1.jpg"
    Image.new("RGB", (90, 90), "green").save(image)
    os.utime(image, ns=(10**9, 10**9))
    assert _extracted(run_pipeline(spec, cache_dir=store, dry_run=True, echo=lambda _: None)) == [
        ("main", "test"),
        ("raw-pixels", "test"),
    ]
    third = run_pipeline(spec, cache_dir=store, progress=False, echo=lambda _: None)
    assert _extracted(third) == [("main", "test"), ("raw-pixels", "test")]
    # A changed base invalidates the base's caches, not the raw-pixel baseline.
    spec.write_text(SPEC.format(pooling="max"))
    fourth = run_pipeline(spec, cache_dir=store, progress=False, echo=lambda _: None)
    assert _extracted(fourth) == [("main", "test"), ("main", "train")]


def test_store_ls_and_prune(tmp_path, photos):
    spec = _write_spec(tmp_path, SPEC.format(pooling="avg"))
    store_dir = tmp_path / "store"
    record = run_pipeline(spec, cache_dir=store_dir, progress=False, echo=lambda _: None)
    dead = store_dir / ("f" * 24 + ".h5.partial")  # an unfinished extraction of the store's
    dead.mkdir()
    EntryManifest(dead / PARTIAL_MARKER).save()
    runner = CliRunner()
    listing = json.loads(
        runner.invoke(cli, ["cache", "ls", "--cache-dir", str(store_dir), "--json"]).output
    )
    caches = [e for e in listing if e["kind"] in ("cache", "partial")]
    assert len(caches) == 5
    complete = [e for e in caches if e["status"] == "complete"]
    assert sorted(e["rows"] for e in complete) == [6, 6, 12, 12]
    assert {e["base"] for e in complete} == {"MobileNetV2 (none)", "pixels (none)"}
    # The run's fits, their stored predictions and its export are the store's too.
    later = [e for e in listing if e not in caches]
    assert {e["kind"] for e in later} == {"fit", "predictions", "export"}
    assert all(e["status"] == "complete" for e in later)
    assert {e["head"] for e in later if e["kind"] == "fit"} == {"logreg", "knn"}
    exported = record["export"]
    assert [e["head"] for e in later if e["kind"] == "export"] == [
        f"{exported['head']} ({exported['kind']})"
    ]
    # Unused for long, they would go; a second run reuses every one (its last use).
    for entry in later:
        path = Path(entry["path"])
        for file in (path / "export.json", path.with_suffix(".skops"), path):
            if file.is_file():
                os.utime(file, (1, 1))
    store = CacheStore(store_dir)
    pruned = store.prune(older_than=parse_age("30d"), dry_run=True).removed
    assert sorted(pruned) == sorted(Path(e["path"]) for e in later)
    again = run_pipeline(spec, cache_dir=store_dir, progress=False, echo=lambda _: None)
    assert again["export"]["reused_export"]
    assert store.prune(older_than=parse_age("30d"), dry_run=True).removed == []
    result = runner.invoke(cli, ["cache", "prune", "--cache-dir", str(store_dir), "--partial"])
    assert result.exit_code == 0 and "1 removed" in result.output
    old = sorted(store_dir.glob("*.h5"))[0]
    os.utime(old, (1, 1))
    removed = CacheStore(store_dir).prune(older_than=parse_age("30d")).removed
    assert removed == [old]
    assert len(list(store_dir.glob("*.h5"))) == 3
    bad = runner.invoke(
        cli, ["cache", "prune", "--cache-dir", str(store_dir), "--older-than", "soon"]
    )
    assert bad.exit_code == 1 and "invalid age 'soon'" in bad.output


def test_run_writes_a_complete_run_record(tmp_path, photos):
    import keras

    spec = _write_spec(tmp_path, SPEC.format(pooling="avg"))
    lines: list[str] = []
    record = run_pipeline(spec, cache_dir=tmp_path / "store", progress=False, echo=lines.append)
    run_dir = tmp_path / "runs" / record["run_dir"].rsplit("/", 1)[-1]
    assert run_dir.is_dir()
    assert (run_dir / "spec.toml").read_text() == spec.read_text()
    saved = json.loads((run_dir / "run.json").read_text())
    assert saved["compare"]["winner"] in ("logreg", "knn")
    assert {r["name"] for r in saved["compare"]["rows"]} >= {"logreg", "knn"}
    assert any(r["name"].endswith("@raw-pixels") for r in saved["compare"]["rows"])
    assert all(e["fingerprint"].startswith("sha256:") for e in saved["extractions"])
    assert set(saved["timings"]) >= {"compare", "export", "predict", "total"}
    assert saved["software"]["keras"] == keras.__version__
    report = json.loads((run_dir / "report" / "report.json").read_text())
    assert report["winner"] == saved["compare"]["winner"]
    model = Path(saved["export"]["path"])
    assert model.exists() and model.parent == run_dir
    assert saved["export"]["parity"]["argmax_agreement"] == 1.0
    predictions = (run_dir / "predictions.csv").read_text().splitlines()
    assert len(predictions) == 1 + 4
    assert saved["predict"]["images"] == 4
    text = "\n".join(lines)
    assert "Winner:" in text and "Exported:" in text and "Run record:" in text


#: The shipped ``bottleneck run`` specs; ``fashion_mnist_targets.toml`` is the targets
#: benchmark's spec (tests/bench/test_targets_bench.py checks it).
SHIPPED_SPECS = [
    "fashion_mnist.toml",
    "flowers_mobilenet.toml",
    "digits_fashion_base.toml",
    "wordnet_glosses.toml",
]


@pytest.mark.parametrize("name", SHIPPED_SPECS)
def test_shipped_specs_are_valid(name):
    spec = load_spec(Path("pipelines") / name)
    assert spec["export"]["head"] == "best"
    assert Path(spec["outputs"]["dir"]).name == "runs"


def test_every_shipped_spec_is_checked():
    shipped = {path.name for path in Path("pipelines").glob("*.toml")}
    assert shipped == {*SHIPPED_SPECS, "fashion_mnist_targets.toml"}


@pytest.mark.slow
def test_the_clothing_base_on_digits_is_said_not_to_help(tmp_path):
    """Issue 22.9: the second demo (a task unlike the base's) names the outcome in words."""
    record = run_pipeline(
        "pipelines/digits_fashion_base.toml", cache_dir=tmp_path, progress=False, echo=str
    )
    transfer = record["compare"]["transfer"]
    assert transfer["verdict"] in ("inconclusive", "negative")
    assert NO_HELP in transfer["sentence"] or "Negative transfer" in transfer["sentence"]


def test_photo_spec_offline_stops_at_the_base_with_a_clear_message(monkeypatch, tmp_path):
    import keras

    def no_network(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None")

    monkeypatch.setattr(keras.utils, "get_file", no_network)
    monkeypatch.setattr("keras.src.utils.file_utils.get_file", no_network)
    result = CliRunner().invoke(
        cli, ["run", "pipelines/flowers_mobilenet.toml", "--cache-dir", str(tmp_path), "--quiet"]
    )
    assert result.exit_code == 1
    assert "could not download the imagenet weights of MobileNetV2" in result.output
    assert "--weights PATH" in result.output and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_cli_run_says_each_warning_once_in_its_output(tmp_path, photos):
    import warnings

    from bottleneck_transfer.errors import BottleneckWarning

    spec = _write_spec(tmp_path, SPEC.format(pooling="avg"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = CliRunner().invoke(
            cli, ["run", str(spec), "--cache-dir", str(tmp_path / "store"), "--quiet"]
        )
    assert result.exit_code == 0, result.output
    assert result.output.count("fewer than 20 rows in class 'cat'") == 1, result.output
    assert not [w for w in caught if issubclass(w.category, BottleneckWarning)]


def test_spec_learning_curve_runs_after_the_comparison(tmp_path, photos):
    body = SPEC.format(pooling="avg").replace(
        'use = ["logreg", "knn"]', 'use = ["logreg", "knn"]\nlearning_curve = [3, "all"]'
    )
    spec = _write_spec(tmp_path, body)
    lines: list[str] = []
    record = run_pipeline(spec, cache_dir=tmp_path / "store", progress=False, echo=lines.append)
    curve = record["learning_curve"]
    assert curve["sizes"] == [3, "all"] and curve["repeats"] == {"3": 10, "all": 1}
    assert curve["lines"] == ["logreg", "knn", "chosen head", "raw-pixels"]
    at_all = {p["line"]: p["mean"] for p in curve["points"] if p["size"] == "all"}
    compared = {r["name"]: r["accuracy"] for r in record["compare"]["rows"]}
    assert at_all["logreg"] == compared["logreg"], "'all' is the comparison already run"
    assert "learning_curve" in record["timings"]
    report = Path(record["run_dir"]) / "report"
    assert (report / "learning_curve.png").stat().st_size > 0
    assert json.loads((report / "learning_curve.json").read_text())["sentence"]
    page = (report / "report.html").read_text()
    assert 'alt="learning curve"' in page and html.escape(curve["sentence"]) in page
    assert curve["sentence"] in "\n".join(lines)
    bad = _write_spec(tmp_path, body.replace('[3, "all"]', "[0]"))
    with pytest.raises(SpecError, match=r":\d+: heads.learning_curve: learning-curve sizes"):
        load_spec(bad)


def test_views_augment_every_training_cache_and_no_test_cache(tmp_path, photos):
    from bottleneck_transfer.features.cache import FeatureCache

    body = SPEC.format(pooling="avg").replace(
        "[heads]", '[extract]\naugment = "flip,color"\nviews = 2\nseed = 1\n\n[heads]'
    )
    spec = _write_spec(tmp_path, body)
    store = tmp_path / "store"
    record = run_pipeline(spec, cache_dir=store, progress=False, echo=lambda _: None)
    for step in record["extractions"]:
        with FeatureCache.open(step["cache"]) as cache:
            assert cache.has_views == (step["split"] == "train"), step
            plain = int((cache.source_rows == range(len(cache))).sum())
            assert len(cache) == (3 if step["split"] == "train" else 1) * plain
            if cache.has_views:
                assert cache.identity["views"] == {
                    "recipe": ["flip", "color"],
                    "count": 2,
                    "seed": 1,
                }
    run_dir = tmp_path / "runs" / record["run_dir"].rsplit("/", 1)[-1]
    report = json.loads((run_dir / "report" / "report.json").read_text())
    with FeatureCache.open(_test_cache(record)) as test:
        assert report["n_eval_rows"] == len(test)  # scored on the plain test rows only
    again = run_pipeline(spec, cache_dir=store, progress=False, echo=lambda _: None)
    assert _extracted(again) == []


def _test_cache(record):
    return next(
        e["cache"] for e in record["extractions"] if (e["role"], e["split"]) == ("main", "test")
    )
