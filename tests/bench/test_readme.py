"""The README's benchmark blocks are what the committed JSON renders, measured on the shipped
specs as they are now; the tables rebuild from their JSON exactly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from bottleneck_transfer.bench import readme
from bottleneck_transfer.bench.readme import (
    BLOCKS,
    DATA,
    main,
    readme_blocks,
    record_run,
    render_blocks,
    settings_mismatches,
    spec_claims,
    splice,
    stale_blocks,
)
from bottleneck_transfer.bench.specs import spec_settings
from bottleneck_transfer.errors import BottleneckError
from bottleneck_transfer.heads.compare import Comparison, compare_heads
from bottleneck_transfer.heads.learning_curve import LearningCurve, format_curve, learning_curve
from bottleneck_transfer.heads.report import format_table
from bottleneck_transfer.heads.training import LabeledData
from heads_fixtures import digits_caches

REPO = Path(__file__).resolve().parents[2]
DEMO = "pipelines/fashion_mnist.toml"


def _checkout(tmp_path: Path) -> Path:
    """A copy of the parts of the checkout the README blocks read."""
    tmp_path.mkdir(exist_ok=True)
    for part in (
        "README.md",
        "pipelines",
        "data/bench",
        "data/bases",
        "data/digits",
        "data/wordnet",
    ):
        source, target = REPO / part, tmp_path / part
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy(source, target)
    return tmp_path


def test_every_readme_block_is_what_its_committed_json_renders():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert set(readme_blocks(text)) == set(BLOCKS)
    assert stale_blocks(REPO) == []
    for name, content in render_blocks(REPO).items():
        assert f"<!-- bench:{name} -->\n{content}\n<!-- /bench:{name} -->" in text
    for figure in readme.FIGURES:
        assert f"]({figure.as_posix()})" in text and (REPO / figure).exists()


def test_committed_reports_match_the_shipped_specs_they_measure():
    claims = spec_claims(REPO)
    where = {w for w, _, _ in claims}
    assert {"accuracy.json.views", "accuracy.json.float16_heads"} <= where
    assert {"fashion_mnist_run.json", "digits_fashion_base_run.json"} <= where
    assert "wordnet_glosses_run.json" in where
    assert {spec for _, spec, _ in claims} == {
        DEMO,
        "pipelines/digits_fashion_base.toml",
        "pipelines/wordnet_glosses.toml",
    }
    assert settings_mismatches(REPO) == []
    for _, spec, settings in claims:
        assert settings == spec_settings(REPO / spec)


def test_a_changed_spec_or_an_edited_number_is_caught(tmp_path):
    root = _checkout(tmp_path)
    assert stale_blocks(root) == [] and settings_mismatches(root) == []
    spec = root / DEMO
    spec.write_text(spec.read_text().replace("limit = 12000", "limit = 6000"))
    mismatches = settings_mismatches(root)
    assert len(mismatches) == 3  # both accuracy parts and the recorded run
    assert all("[data]" in line and "'limit': 12000" in line for line in mismatches)
    text = (root / "README.md").read_text()
    content = readme_blocks(text)["float16-heads"]
    edited = content.replace("| 10 | logreg | 0.", "| 10 | logreg | 1.", 1)
    assert edited != content
    (root / "README.md").write_text(text.replace(content, edited))
    assert stale_blocks(root) == ["float16-heads"]
    assert main(["check", "--root", str(root)]) == 1
    assert main(["write", "--root", str(root)]) == 0
    assert stale_blocks(root) == []
    assert (root / "README.md").read_text() == text  # only the blocks were rewritten


def test_splice_replaces_only_block_contents_and_names_missing_or_unknown_blocks():
    text = "# title\n<!-- bench:a -->\nold\nlines\n<!-- /bench:a -->\ntail\n"
    assert splice(text, {"a": "new"}) == "# title\n<!-- bench:a -->\nnew\n<!-- /bench:a -->\ntail\n"
    with pytest.raises(BottleneckError, match=r"no block 'b'.*<!-- bench:b -->"):
        splice(text, {"a": "new", "b": "x"})
    with pytest.raises(BottleneckError, match="block 'a' is rendered by nothing"):
        splice(text, {})


def test_a_missing_json_file_is_one_error_naming_it(tmp_path, capsys):
    root = _checkout(tmp_path)
    (root / DATA / "accuracy.json").unlink()
    assert main(["check", "--root", str(root)]) == 1
    assert "accuracy.json" in capsys.readouterr().err


def test_a_pending_block_says_how_to_measure_it_until_its_run_is_recorded(tmp_path):
    """A block whose run is not recorded (the text demo's, issue 29.6, before its run) says
    how to measure it; once recorded, it renders the run's table."""
    root = _checkout(tmp_path)
    recorded = root / DATA / "wordnet_glosses_run.json"
    kept = recorded.read_bytes()
    recorded.unlink()
    pending = render_blocks(root)["wordnet-compare"]
    assert pending.startswith("<sub>Not measured yet: `bottleneck run pipelines/wordnet_glosses")
    assert "`python -m bottleneck_transfer.bench.readme write`" in pending
    assert "\n" not in pending
    assert stale_blocks(root) == ["wordnet-compare", "wordnet-learning-curve"]
    recorded.write_bytes(kept)
    blocks = render_blocks(root)
    assert blocks["wordnet-compare"].startswith("```\nHoldout: fitted on 2400 rows")
    assert (
        "logreg@tfidf" in blocks["wordnet-compare"] and "tfidf" in blocks["wordnet-learning-curve"]
    )
    assert "From `data/bench/wordnet_glosses_run.json`" in blocks["wordnet-learning-curve"]
    assert stale_blocks(root) == []


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    train, test = digits_caches(tmp_path_factory.mktemp("digits"))
    return LabeledData.from_cache(train), LabeledData.from_cache(test)


def test_a_comparison_and_a_curve_print_the_same_after_a_json_round_trip(digits):
    train, test = digits
    comparison = compare_heads(train, test, heads=["logreg", "knn"], n_bootstrap=50, progress=False)
    summary = json.loads(json.dumps(comparison.to_dict()))
    assert format_table(Comparison.from_dict(summary)) == format_table(comparison)
    curve = learning_curve(train, test, sizes="3,all", heads=["logreg"], repeats=2)
    rebuilt = LearningCurve.from_dict(json.loads(json.dumps(curve.to_dict())))
    assert format_curve(rebuilt) == format_curve(curve)


def test_a_recorded_run_keeps_its_settings_and_drops_where_it_ran(tmp_path):
    root = _checkout(tmp_path / "checkout")
    run_dir, store = root / "runs/20261207-000000-fashion_mnist", tmp_path / "store"
    (run_dir / "report").mkdir(parents=True)
    from bottleneck_transfer.pipeline.spec import load_spec

    resolved = load_spec(root / DEMO)
    (run_dir / "spec.resolved.json").write_text(json.dumps(resolved))
    cache = f"{store}/abc.h5"
    record = {
        "spec": str(root / DEMO),
        "run_dir": str(run_dir),
        "started_at": "2026-12-07T00:00:00+00:00",
        "software": {"keras": "3"},
        "timings": {"total": 1.0},
        "extractions": [{"cache": cache}],
        "summary": ["Winner: logreg", "Other: x", f"Exported: {run_dir}/model.keras"],
    }
    (run_dir / "run.json").write_text(json.dumps(record))
    report = {"caches": {"train": {"path": cache}}, "files": {"x": "y"}}
    (run_dir / "report/report.json").write_text(json.dumps(report))
    document = record_run(run_dir, root)
    assert document["spec"] == DEMO and document["settings"] == spec_settings(root / DEMO)
    assert document["comparison"] == {"caches": {"train": {"path": "caches/abc.h5"}}}
    assert document["shown_summary"] == [
        "Winner: logreg",
        "Exported: runs/20261207-000000-fashion_mnist/model.keras",
        "Run record: runs/20261207-000000-fashion_mnist/run.json",
    ]
    assert "learning_curve" not in document
