"""One spelling per option on every command, help examples that render, did-you-mean errors."""

from __future__ import annotations

import json
import re

import click
import pytest
from bottleneck_transfer.cli import cli
from bottleneck_transfer.cli.options import MEANING
from bottleneck_transfer.errors import did_you_mean
from bottleneck_transfer.heads.declared import METRIC_NAMES
from click.testing import CliRunner
from heads_fixtures import blobs, write_cache


def _leaves(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            found += _leaves(command, (*path, name))
        else:
            found.append((*path, name))
    return found


COMMANDS = _leaves(cli)
#: Commands that write a file or folder the user names.
WRITERS = [
    ("extract",),
    ("train",),
    ("export",),
    ("predict",),
    ("finetune",),
    ("compare",),
    ("bench",),
    ("cache", "export"),
]
#: Commands that show a progress bar (or progress messages).
PROGRESS = [("extract",), ("predict",), ("finetune",), ("run",), ("bench",)]


def _options(path: tuple[str, ...]) -> dict[str, click.Option]:
    command = cli
    for name in path:
        command = command.commands[name]
    return {
        opt: param
        for param in command.params
        if isinstance(param, click.Option)
        for opt in param.opts
    }


def invoke(*args: object) -> click.testing.Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    """A small train and test cache (3 classes): these tests check options, not results, so
    the reports and fits they run need no more rows."""
    folder = tmp_path_factory.mktemp("caches")
    X, y = blobs(n=240, dim=16, centers=3)
    return (
        write_cache(folder / "train.h5", X[:180], y[:180], source="train"),
        write_cache(folder / "test.h5", X[180:], y[180:], source="test"),
    )


def test_the_command_list_is_complete():
    assert {("info",), ("verify",), ("cache", "ls"), *WRITERS, *PROGRESS} <= set(COMMANDS)


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_help_shows_examples_that_render(path):
    result = invoke(*path, "--help")
    assert result.exit_code == 0, result.output
    block = re.search(r"\n  Examples?:\n((?:    .*\n)+)", result.output)
    assert block, f"no example in {' '.join(path)} --help"
    lines = block.group(1).splitlines()
    assert any(line.strip().startswith(f"bottleneck {' '.join(path)} ") for line in lines)
    for previous, line in zip(["", *lines[:-1]], lines, strict=True):
        # A continued line is indented under one ending in ' \'; nothing runs together.
        continued = line.startswith("      ")
        assert continued == previous.endswith(" \\"), (previous, line)
        assert "   " not in line.strip(), line


#: The options every command shares where they make sense: the same name, type, default and
#: meaning (the start of the help) wherever they appear; commands only add what they apply to.
SHARED = ("-o", "--force", "--quiet", "--json", "--seed", "--metric")


def _type(param: click.Option) -> tuple:
    kind = param.type
    return (type(kind).__name__, getattr(kind, "choices", None), param.is_flag, param.default)


@pytest.mark.parametrize("option", SHARED)
def test_a_shared_option_means_one_thing_everywhere(option):
    found = {path: _options(path)[option] for path in COMMANDS if option in _options(path)}
    assert len(found) >= 2, option
    meaning = MEANING["--out" if option == "-o" else option]
    first = next(iter(found.values()))
    for path, param in found.items():
        where = " ".join(path)
        assert (param.opts, param.name) == (first.opts, first.name), where
        assert _type(param) == _type(first), where
        assert param.help.startswith(meaning), (where, param.help)
    if option == "--force":  # every command that writes a file the user names can replace it
        assert {p for p in WRITERS if p != ("compare",)} <= set(found)


@pytest.mark.parametrize("path", WRITERS, ids=" ".join)
def test_every_writer_takes_dash_o(path):
    option = _options(path)["-o"]
    assert option.opts == ["-o", "--out"] and option.name == "out"


@pytest.mark.parametrize("path", PROGRESS, ids=" ".join)
def test_every_progress_bar_has_quiet(path):
    assert _options(path)["--quiet"].is_flag


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_json_prints_the_result_everywhere(path):
    option = _options(path)["--json"]
    assert option.name == "as_json" and option.help.startswith("Print")


@pytest.mark.parametrize("command", ["train", "export", "finetune"])
def test_writers_refuse_an_existing_output_without_force(command, caches, tmp_path):
    out = tmp_path / "taken.keras"
    out.write_text("keep me")
    args = {
        "train": ["train", caches[0], "-o", out],
        "export": ["export", caches[0], "-o", out],
        "finetune": ["finetune", tmp_path / "model.keras", tmp_path, "--val", tmp_path, "-o", out],
    }[command]
    result = invoke(*args)
    assert result.exit_code == 1
    assert f"Error: {out} exists; pass --force to replace it" in result.output
    assert out.read_text() == "keep me"
    assert _options((command,))["--force"].is_flag


def test_train_with_force_replaces(caches, tmp_path):
    out = tmp_path / "head.skops"
    out.write_text("old")
    result = invoke("train", caches[0], "-o", out, "--force")
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:2] == b"PK"  # a skops (zip) file replaced the text


def test_compare_writes_its_report_with_o_and_still_takes_report(caches, tmp_path):
    train, test = caches
    common = ["compare", train, "--test", test, "--heads", "logreg", "--bootstrap", 100]
    result = invoke(*common, "-o", tmp_path / "new")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "new" / "report.md").exists()
    result = invoke(*common, "--report", tmp_path / "old", "--json")
    assert result.exit_code == 0, result.output
    assert "'report' is deprecated. Use -o/--out." in result.stderr
    assert (tmp_path / "old" / "report.md").exists()
    assert json.loads(result.stdout)["files"]


def test_unknown_names_get_a_suggestion(caches):
    result = invoke("compare", caches[0], "--heads", "logrg", "--cv", 2)
    assert result.exit_code == 1
    assert "unknown head 'logrg'. Did you mean 'logreg'?" in result.output
    assert "Did you mean '--json'?" in invoke("info", caches[0], "--jsn").output
    assert "Did you mean 'compare'?" in invoke("comapre").output


def test_unknown_base_gets_a_suggestion(photo_folder, tmp_path):
    result = invoke("extract", photo_folder, "--base", "resnet5", "-o", tmp_path / "c.h5")
    assert result.exit_code == 1
    assert "Did you mean 'ResNet50'?" in result.output


def test_did_you_mean():
    assert did_you_mean("logrg", ["logreg", "knn"]) == " Did you mean 'logreg'?"
    assert did_you_mean("zzz", ["logreg", "knn"]) == ""
    assert did_you_mean("resnet5", ["ResNet50"], key=str.lower) == " Did you mean 'ResNet50'?"
    assert did_you_mean("kras", {"keras": ".keras"}) == " Did you mean 'keras'?"  # a dict's keys


def test_spec_keys_get_a_suggestion(tmp_path):
    from bottleneck_transfer.pipeline.spec import SpecError, load_spec

    spec = tmp_path / "spec.toml"
    spec.write_text('[data]\ntrain = "fashion-mnist:train"\nlimt = 3\n[bse]\nname = "x"\n')
    with pytest.raises(SpecError, match=r"unknown section\. Did you mean 'base'"):
        load_spec(spec)
    spec.write_text('[data]\ntrain = "fashion-mnist:train"\nlimt = 3\n')
    with pytest.raises(SpecError, match=r":3: data\.limt: unknown key\. Did you mean 'limit'\?"):
        load_spec(spec)


@pytest.mark.parametrize("missing", ["model", "images"])
def test_predict_on_a_missing_path_exits_non_zero_with_one_line(missing, tmp_path):
    from PIL import Image

    model, images = tmp_path / "model.keras", tmp_path / "images"
    if missing == "model":
        images.mkdir()
        Image.new("RGB", (8, 8)).save(images / "a.png")
    else:
        model.write_bytes(b"not loaded: the images are checked first")
    result = invoke("predict", model, images)
    assert result.exit_code == 1
    gone = model if missing == "model" else images
    assert (
        result.output == f"Error: {'model' if missing == 'model' else 'source'} not found: {gone}\n"
    )


@pytest.mark.parametrize("path", [(), ("cache",)], ids=["bottleneck", "cache"])
def test_every_group_help_has_an_example_too(path):
    result = invoke(*path, "--help")
    assert result.exit_code == 0 and re.search(r"\n  Examples?:\n    bottleneck ", result.output)


def test_finetune_help_says_what_is_frozen_and_how_to_choose_unfreeze():
    text = " ".join(invoke("finetune", "--help").output.split())
    assert "What stays frozen: every base layer below the top --unfreeze" in text
    assert "every BatchNormalization layer" in text and "What trains:" in text
    assert "Choosing --unfreeze: start with the base's last block" in text
    assert "0 trains the head only" in text


def test_shell_completion_offers_commands_and_choices():
    def complete(words: str) -> list[str]:
        env = {
            "_BOTTLENECK_COMPLETE": "bash_complete",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1)),
        }
        result = CliRunner().invoke(cli, [], prog_name="bottleneck", env=env)
        return [line.split(",", 1)[1] for line in result.output.splitlines()]

    assert complete("bottleneck cache pr") == ["prune"]
    assert complete("bottleneck export c.h5 --metric ") == list(METRIC_NAMES)
