"""A pipeline spec on texts: a text CSV through a tiny KerasHub BERT, compared beside the
TF-IDF and random-backbone baselines, then exported (raw strings in) and predicting the test
texts."""

from __future__ import annotations

from pathlib import Path

from bottleneck_transfer.pipeline.run import run_pipeline
from hub_fixtures import needs_keras_hub
from text_fixtures import corpus, save_bert, write_csv

pytestmark = needs_keras_hub

SPEC = """
[data]
train = "train.csv"
test = "test.csv"

[base]
name = "{base}"
pooling = "mean"
max_length = 32

[heads]
use = ["logreg"]

[baselines]
use = ["tfidf", "random-base"]

[export]
predict = 30
"""


def test_a_text_spec_compares_the_base_with_tfidf_and_random_weights(tmp_path):
    for name, seed, n in (("train", 0, 60), ("test", 1, 30)):
        write_csv(tmp_path / f"{name}.csv", *corpus(n, seed=seed))
    base = save_bert(tmp_path / "bert_tiny")
    spec = tmp_path / "texts.toml"
    spec.write_text(SPEC.format(base=base))
    lines: list[str] = []
    record = run_pipeline(spec, cache_dir=tmp_path / "store", progress=False, echo=lines.append)
    names = {row["name"] for row in record["compare"]["rows"]}
    assert names == {"logreg", "logreg@tfidf", "logreg@random-base"}
    model = Path(record["export"]["path"])
    assert model.suffix == ".keras" and model.is_file()
    assert record["export"]["parity"]["relative"] and record["export"]["parity"]["n"] == 60
    assert record["predict"]["unit"] == "texts" and record["predict"]["images"] == 30
    rows = (model.parent / "predictions.csv").read_text().splitlines()
    assert len(rows) == 1 + 30 and rows[1].startswith("test.csv#0,")
    assert any("parity checked on 60 texts (relative)" in line for line in record["summary"])
    assert any(line.startswith("Predictions:") and "30 texts" in line for line in record["summary"])
