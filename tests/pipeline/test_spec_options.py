"""Spec keys that reach extraction: batch size "auto" by default, any normalisation."""

from __future__ import annotations

import pytest
from bottleneck_transfer.pipeline.spec import SpecError, load_spec

BODY = """
[data]
train = "{train}"
test = "{train}"

[base]
name = "mobilenet_v2"
{base}

[extract]
{extract}
"""


def _spec(tmp_path, base: str = "", extract: str = ""):
    path = tmp_path / "spec.toml"
    path.write_text(BODY.format(train=tmp_path, base=base, extract=extract))
    return path


def test_batch_size_defaults_to_auto_so_extract_sizes_it_for_the_device(tmp_path):
    assert load_spec(_spec(tmp_path))["extract"]["batch_size"] is None
    auto = load_spec(_spec(tmp_path, extract='batch_size = "auto"'))
    assert auto["extract"]["batch_size"] is None
    assert load_spec(_spec(tmp_path, extract="batch_size = 128"))["extract"]["batch_size"] == 128
    with pytest.raises(
        SpecError, match=r':11: extract.batch_size: must be a positive integer or "auto"'
    ):
        load_spec(_spec(tmp_path, extract='batch_size = "big"'))


@pytest.mark.parametrize(
    "value", ["tf", "mean=127.5,std=127.5", "mean=123.7,116.3,103.5;std=58.4,57.1,57.4"]
)
def test_preprocess_takes_modes_and_mean_std(tmp_path, value):
    spec = load_spec(_spec(tmp_path, base=f'preprocess = "{value}"'))
    assert spec["base"]["preprocess"] == value


def test_bad_preprocess_names_the_line_and_the_syntax(tmp_path):
    with pytest.raises(SpecError) as info:
        load_spec(_spec(tmp_path, base='preprocess = "mean=1,std=0"'))
    message = str(info.value)
    assert ":8: base.preprocess: invalid --preprocess: std= must be > 0" in message
    assert "mean=M,std=S" in message and "Received: preprocess='mean=1,std=0'" in message


def test_store_dtype_and_compression_reach_extract(tmp_path):
    default = load_spec(_spec(tmp_path))["extract"]
    assert (default["store_dtype"], default["compression"]) == ("float32", None)
    spec = load_spec(_spec(tmp_path, extract='store_dtype = "float16"\ncompression = "lzf"'))
    assert (spec["extract"]["store_dtype"], spec["extract"]["compression"]) == ("float16", "lzf")
    with pytest.raises(SpecError, match=r"extract.store_dtype: unknown value\(s\) \['int8'\]"):
        load_spec(_spec(tmp_path, extract='store_dtype = "int8"'))


def test_views_need_a_valid_recipe(tmp_path):
    spec = load_spec(_spec(tmp_path, extract='augment = "crop,flip"\nviews = 4\nseed = 3'))
    assert (spec["extract"]["augment"], spec["extract"]["views"], spec["extract"]["seed"]) == (
        "crop,flip",
        4,
        3,
    )
    assert load_spec(_spec(tmp_path))["extract"]["views"] == 0
    with pytest.raises(SpecError, match=r":11: extract.views: needs extract.augment") as info:
        load_spec(_spec(tmp_path, extract="views = 8"))
    assert "\n" not in str(info.value)
    with pytest.raises(SpecError, match=r"extract.augment: unknown augmentation\(s\) zoom"):
        load_spec(_spec(tmp_path, extract='augment = "flip,zoom"\nviews = 2'))


def test_heads_metric_is_one_of_the_declared_metrics(tmp_path):
    """Issue 22.3: the spec's heads.metric, as --metric; default None (resolved by compare)."""
    path = _spec(tmp_path)
    assert load_spec(path)["heads"]["metric"] is None
    path.write_text(path.read_text() + '\n[heads]\nmetric = "macro-f1"\n')
    assert load_spec(path)["heads"]["metric"] == "macro-f1"
    path.write_text(path.read_text().replace('"macro-f1"', '"f1"'))
    # f1 is a binary target's metric (data.target), not a class target's
    with pytest.raises(SpecError, match=r"heads.metric: 'f1' is not a metric of class targets; v"):
        load_spec(path)
    path.write_text(path.read_text().replace('"f1"', '"f2"'))
    with pytest.raises(SpecError, match=r"heads.metric: unknown value\(s\) \['f2'\]; valid: acc"):
        load_spec(path)


def test_runtime_defaults_to_the_bases_own_and_takes_onnx_or_auto(tmp_path):
    # unset: keras, or onnx for an ONNX file base (features.runners.open_runner)
    assert load_spec(_spec(tmp_path))["extract"]["runtime"] is None
    assert load_spec(_spec(tmp_path, extract='runtime = "onnx"'))["extract"]["runtime"] == "onnx"
    with pytest.raises(SpecError, match=r"extract.runtime: .*auto.*keras.*onnx"):
        load_spec(_spec(tmp_path, extract='runtime = "tflite"'))


def test_base_layout_takes_nchw_or_nhwc(tmp_path):
    assert load_spec(_spec(tmp_path))["base"]["layout"] is None
    assert load_spec(_spec(tmp_path, base='layout = "nchw"'))["base"]["layout"] == "nchw"
    with pytest.raises(SpecError, match=r"base.layout: .*nchw, nhwc"):
        load_spec(_spec(tmp_path, base='layout = "chw"'))
