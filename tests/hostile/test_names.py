"""A name means the registered model: decoys in the working directory are never loaded.

The working directory holds ``mobilenet_v2/`` (a SavedModel that writes a file when run),
``resnet50.keras`` (junk) and ``pixels/`` (an empty folder); ``--base mobilenet_v2`` and
``pixels`` still build the registered models, the decoys are unchanged, and ``resnet50.keras``
or ``./mobilenet_v2`` spelled as paths are those paths (``resnet50`` is a name by the same rule:
:func:`test_the_one_spelling_rule`).
A bare word that is no registered name but is a file here gets one line saying how to pick it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from bottleneck_transfer.cli import cli
from bottleneck_transfer.features.bases import load_base
from bottleneck_transfer.features.bases.hub import spelled_path
from bottleneck_transfer.features.cache import FeatureCache
from click.testing import CliRunner
from graph_fixtures import save_hostile_saved_model
from hub_fixtures import save_images, save_saved_model


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def decoys(tmp_path, monkeypatch) -> Path:
    """A working directory holding decoys named like registered models."""
    work = tmp_path / "work"
    work.mkdir()
    save_hostile_saved_model(work / "mobilenet_v2", tmp_path / "written.txt")
    (work / "resnet50.keras").write_bytes(b"not a keras file")
    (work / "pixels").mkdir()
    monkeypatch.chdir(work)
    return work


def test_registered_names_build_the_registered_models_not_the_decoys(decoys, tmp_path):
    images = save_images(tmp_path / "images")
    before = _digest(decoys)
    assert load_base("pixels", image_size=8).description["application"] == "pixels"
    args = ["extract", str(images), "--base", "mobilenet_v2", "--weights", "none"]
    result = CliRunner().invoke(cli, [*args, "--image-size", "32", "--quiet", "-o", "c.h5"])
    assert result.exit_code == 0, result.output
    with FeatureCache.open(decoys / "c.h5") as cache:
        assert cache.provenance["base"]["application"] == "MobileNetV2"
        assert "saved_model" not in cache.provenance["base"]
    (decoys / "c.h5").unlink()
    assert _digest(decoys) == before
    assert not (tmp_path / "written.txt").exists()


def test_paths_are_paths(decoys, tmp_path):
    """``./mobilenet_v2`` is the folder (its graph is checked, and refused); ``resnet50.keras``
    is the file (refused as not a Keras model)."""
    images = save_images(tmp_path / "images")
    spelled = ["extract", str(images), "--preprocess", "unit", "-o", "c.h5", "--base"]
    folder = CliRunner().invoke(cli, [*spelled, "./mobilenet_v2"])
    assert folder.exit_code == 1 and "'WriteFile'" in folder.output
    keras_file = CliRunner().invoke(cli, [*spelled, "resnet50.keras"])
    assert keras_file.exit_code == 1
    assert "cannot load model file resnet50.keras" in keras_file.output
    assert not (tmp_path / "written.txt").exists()


def test_a_bare_word_that_is_only_a_local_folder_says_how_to_pick_it(decoys, tmp_path):
    save_saved_model(decoys / "mymodel")
    images = save_images(tmp_path / "images")
    args = ["extract", str(images), "--preprocess", "unit", "--quiet", "-o", "c.h5", "--base"]
    result = CliRunner().invoke(cli, [*args, "mymodel"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    (line,) = result.output.strip().splitlines()
    assert "pass --base ./mymodel for it, or a keras.applications name" in line
    assert CliRunner().invoke(cli, [*args, "./mymodel"]).exit_code == 0


@pytest.mark.parametrize(
    ("spelling", "path"),
    [
        ("mobilenet_v2", None),
        ("ResNet50", None),
        ("keras-hub:resnet_50_imagenet", None),
        ("hf://org/model", None),
        ("./mobilenet_v2", "mobilenet_v2"),
        ("resnet50.keras", "resnet50.keras"),
        ("models/resnet50", "models/resnet50"),
        (Path("mobilenet_v2"), "mobilenet_v2"),
    ],
)
def test_the_one_spelling_rule(spelling, path):
    got = spelled_path(spelling)
    assert (got if got is None else got.as_posix()) == path
