"""The text demo's corpus: WordNet data lines to (id, lexicographer file, gloss), and the
shipped CSVs drawn from them (on a fixture of data lines; Debian's wordnet-base not needed)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from bottleneck_transfer.bench import wordnet
from bottleneck_transfer.bench.wordnet import (
    BASE_CLASSES,
    TRANSFER_CLASSES,
    Gloss,
    by_class,
    draw,
    parse_line,
    read_synsets,
    write_demo_csvs,
)
from bottleneck_transfer.errors import SourceError

REPO = Path(__file__).resolve().parents[2]
LICENSE = "  1 This software and database is being provided to you, the LICENSEE, by  \n"
DOG = (
    "02084071 05 n 03 dog 0 domestic_dog 0 Canis_familiaris 0 001 @ 02083346 n 0000 | a member "
    'of the genus Canis; "the dog barked all night"  \n'
)


def _line(offset: int, lexname: str, gloss: str) -> str:
    number = wordnet.LEXNAMES.index(lexname)
    return f"{offset:08d} {number:02d} n 01 word{offset} 0 000 | {gloss}  \n"


def _data_noun(folder: Path, per_class: int) -> Path:
    """A ``data.noun`` of ``per_class`` synsets in every noun file (and a license header)."""
    nouns = [name for name in wordnet.LEXNAMES if name.startswith("noun.")]
    lines = [LICENSE, LICENSE]
    for k in range(per_class):
        lines += [_line(1000 * k + j, name, f"gloss {k} of {name}") for j, name in enumerate(nouns)]
    folder.mkdir(exist_ok=True)
    (folder / "data.noun").write_text("".join(lines), encoding="utf-8")
    return folder


def test_a_data_line_gives_its_offset_lexicographer_file_and_gloss():
    assert parse_line(DOG, "data.noun:30") == Gloss(
        "02084071-n", "noun.animal", 'a member of the genus Canis; "the dog barked all night"'
    )
    assert parse_line(LICENSE, "data.noun:1") is None
    verb = "01835496 38 v 01 travel 0 000 | change location; move  \n"
    travel = Gloss("01835496-v", "verb.motion", "change location; move")
    assert parse_line(verb, "data.verb:9") == travel


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("not a synset\n", "no 'offset lex_filenum"),
        ("0208407x 05 n 01 dog 0 000 | a dog\n", "offset .0208407x. and lex_filenum .05. must be"),
        ("02084071 45 n 01 dog 0 000 | a dog\n", "lex_filenum 45 is not a lexicographer file"),
    ],
)
def test_a_line_that_is_no_synset_is_refused_naming_file_and_line(tmp_path, line, says):
    path = tmp_path / "data.noun"
    path.write_text(LICENSE + DOG + line, encoding="utf-8")
    with pytest.raises(SourceError, match=f"{path}:3: not a WordNet data line: {says}") as info:
        list(read_synsets([path]))
    assert "\n" not in str(info.value)


def test_a_missing_database_says_which_package_to_install(tmp_path):
    with pytest.raises(SourceError, match="apt-get install wordnet-base"):
        list(read_synsets([tmp_path / "data.noun"]))


def test_the_base_and_transfer_classes_are_disjoint_noun_files():
    assert not set(BASE_CLASSES) & set(TRANSFER_CLASSES)
    assert all(name.startswith("noun.") for name in (*BASE_CLASSES, *TRANSFER_CLASSES))
    assert len(BASE_CLASSES) == 16 and len(TRANSFER_CLASSES) == 8


def test_draws_are_disjoint_seeded_and_take_what_a_class_has():
    glosses = [Gloss(f"{k:08d}-n", "noun.animal" if k % 3 else "noun.food", "t") for k in range(30)]
    groups = by_class(reversed(glosses), ["noun.animal", "noun.food"])
    assert [g.id for g in groups["noun.food"]] == [f"{k:08d}-n" for k in range(0, 30, 3)]
    test, train = draw(groups, (4, 100))
    assert [len(test), len(train)] == [8, 22]  # food runs out: 4 test, 6 train
    assert not {g.id for g in test} & {g.id for g in train}
    assert [g.label for g in test] == ["noun.animal"] * 4 + ["noun.food"] * 4
    assert draw(groups, (4, 100)) == [test, train]
    assert draw(groups, (4, 100), seed=1) != [test, train]
    assert draw(groups, (4, 3))[0] == test  # the test draw does not depend on train's size


def test_the_demo_csvs_hold_the_transfer_classes_and_are_rewritten_identically(tmp_path):
    source = _data_noun(tmp_path / "wordnet", per_class=6)
    assert write_demo_csvs(source, tmp_path / "a") == {"train.csv": 0, "test.csv": 48}
    source = _data_noun(tmp_path / "wordnet", per_class=wordnet.TEST_PER_CLASS + 3)
    rows = write_demo_csvs(source, tmp_path / "a")
    assert rows == {"train.csv": 8 * 3, "test.csv": 8 * wordnet.TEST_PER_CLASS}
    write_demo_csvs(source, tmp_path / "b")
    for name in rows:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    with open(tmp_path / "a" / "train.csv", newline="", encoding="utf-8") as file:
        table = list(csv.DictReader(file))
    assert list(table[0]) == ["id", "label", "text"]
    assert sorted({row["label"] for row in table}) == sorted(TRANSFER_CLASSES)
    first = table[0]
    assert first["text"] == f"gloss {int(first['id'][:8]) // 1000} of {first['label']}"


def test_the_shipped_csvs_are_what_the_module_draws():
    """The committed CSVs: 300 + 100 glosses of each transfer class, ids unique across both."""
    tables = {}
    for name in ("train.csv", "test.csv"):
        with open(REPO / "data/wordnet" / name, newline="", encoding="utf-8") as file:
            tables[name] = list(csv.DictReader(file))
    for name, per_class in (("train.csv", 300), ("test.csv", 100)):
        labels = [row["label"] for row in tables[name]]
        assert {label: labels.count(label) for label in set(labels)} == dict.fromkeys(
            TRANSFER_CLASSES, per_class
        )
    ids = [row["id"] for table in tables.values() for row in table]
    assert len(set(ids)) == len(ids) == 3200
    assert all(row["text"] and "|" not in row["text"] for table in tables.values() for row in table)
