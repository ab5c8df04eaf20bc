"""Issue 30.5: the shipped targets spec (binary, multi-label and regression examples on
Fashion-MNIST) is valid, the committed run measured it as it is now, and the benchmark makes
the three tables the README shows."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from bottleneck_transfer.bench import targets
from bottleneck_transfer.features.targets import parse_target_spec
from bottleneck_transfer.heads.registry import make_head
from bottleneck_transfer.heads.target_compare import BASELINES

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / targets.SPEC
KINDS = ["binary", "multilabel", "regression"]


def test_the_shipped_targets_spec_is_valid():
    spec = tomllib.loads(SPEC.read_text(encoding="utf-8"))
    assert (SPEC.parent / spec["base"]["name"]).is_file()
    assert [parse_target_spec(entry["target"]).kind for entry in spec["targets"]] == KINDS
    for entry in spec["targets"]:
        kind = parse_target_spec(entry["target"]).kind
        for head in entry["heads"]:
            make_head(head, target=kind)  # raises for a head that does not fit the target


def test_the_committed_run_measured_the_spec_as_it_is():
    spec = tomllib.loads(SPEC.read_text(encoding="utf-8"))
    payload = json.loads((REPO / "data/bench/targets.json").read_text(encoding="utf-8"))
    assert payload["spec_file"] == str(targets.SPEC)
    assert payload["declared"] == {"data": spec["data"], "targets": spec["targets"]}
    for entry, kind in zip(payload["targets"], KINDS, strict=True):
        comparison = entry["comparison"]
        assert comparison["target"]["kind"] == kind and comparison["mode"] == "holdout"
        assert [row["name"] for row in comparison["rows"]] == entry["heads"]
        assert comparison["baseline"]["name"] == BASELINES[kind]
        for row in comparison["rows"]:
            assert set(row["intervals"]) == set(row["scores"])  # every metric has its interval
            assert f"| {row['name']} |" in entry["table"] or f"**{row['name']}**" in entry["table"]


@pytest.mark.filterwarnings("ignore:.*fewer than 20 rows:UserWarning")
def test_the_benchmark_makes_the_three_tables(fashion_mnist_available, tmp_path, monkeypatch):
    """The benchmark on a small spec of the same form: one table per target kind."""
    spec = SPEC.read_text(encoding="utf-8")
    spec = spec.replace("limit = 2000", "limit = 120").replace(
        "test_limit = 1000", "test_limit = 60"
    )
    spec = spec.replace('"../data/bases/', f'"{REPO}/data/bases/').replace(', "dense"]', "]")
    small = tmp_path / "pipelines" / "targets.toml"
    small.parent.mkdir()
    small.write_text(spec)
    monkeypatch.setattr(targets, "SPEC", small)
    payload = targets.run(tmp_path / "targets.json", tmp_path / "work")
    assert [entry["comparison"]["target"]["kind"] for entry in payload["targets"]] == KINDS
    block = "\n".join(targets.format_targets(payload))
    for entry in payload["targets"]:
        assert f"**{entry['name']}** (`--target {entry['target']}`)" in block
        assert entry["table"] in block and BASELINES[entry["comparison"]["target"]["kind"]] in block
    assert json.loads((tmp_path / "targets.json").read_text())["targets"] == payload["targets"]
