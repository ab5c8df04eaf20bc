"""A pipeline spec on texts: a text CSV through a tiny KerasHub BERT, compared beside the
TF-IDF and random-backbone baselines; the export step says it is not written yet."""

from __future__ import annotations

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
    assert "not written yet" in record["export"]["skipped"]
    assert any(line.startswith("Exported: nothing") for line in record["summary"])
    assert not list((tmp_path / "runs").glob("*/*.keras"))
