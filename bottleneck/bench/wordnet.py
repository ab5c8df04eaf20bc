"""WordNet's glosses as a labelled text corpus: the offline text demo's data.

Debian's ``wordnet-base`` installs WordNet 3.0's database in ``/usr/share/wordnet``. Each
``data.POS`` file holds one synset a line (``wndb(5)``)::

    02084071 05 n 03 dog 0 domestic_dog 0 Canis_familiaris 0 023 @ 02083346 n 0000 ... | a member
    of the genus Canis ...; "the dog barked all night"

and :func:`read_synsets` turns each into a :class:`Gloss`: its id (the synset offset and part
of speech, ``02084071-n`` as NLTK and the Open Multilingual Wordnet write it), its label (the
lexicographer file the synset was written in, ``lexnames(5)``: ``noun.animal``) and its text
(the gloss: definition and examples). License lines (those starting with spaces) are skipped.

The shipped demo (``pipelines/wordnet_glosses.toml``) reads ``data/wordnet/train.csv`` and
``test.csv`` (columns ``id``, ``label``, ``text``): :data:`TRANSFER_CLASSES`, at most
:data:`TRAIN_PER_CLASS` + :data:`TEST_PER_CLASS` glosses of each, drawn by a seeded
permutation. The shipped text base (``data/bases/train_wordnet_base.py``) learns the other
noun classes (:data:`BASE_CLASSES`). Write the CSVs with::

    python -m bottleneck_transfer.bench.wordnet --out data/wordnet
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from bottleneck_transfer.atomic import atomic_write_text
from bottleneck_transfer.errors import SourceError

#: Where Debian's ``wordnet-base`` puts the database.
WORDNET_DIR = Path("/usr/share/wordnet")
#: The lexicographer files by number (``lexnames(5)``), as a data line's second field gives them.
LEXNAMES = (
    "adj.all",
    "adj.pert",
    "adv.all",
    "noun.Tops",
    "noun.act",
    "noun.animal",
    "noun.artifact",
    "noun.attribute",
    "noun.body",
    "noun.cognition",
    "noun.communication",
    "noun.event",
    "noun.feeling",
    "noun.food",
    "noun.group",
    "noun.location",
    "noun.motive",
    "noun.object",
    "noun.person",
    "noun.phenomenon",
    "noun.plant",
    "noun.possession",
    "noun.process",
    "noun.quantity",
    "noun.relation",
    "noun.shape",
    "noun.state",
    "noun.substance",
    "noun.time",
    "verb.body",
    "verb.change",
    "verb.cognition",
    "verb.communication",
    "verb.competition",
    "verb.consumption",
    "verb.contact",
    "verb.creation",
    "verb.emotion",
    "verb.motion",
    "verb.perception",
    "verb.possession",
    "verb.social",
    "verb.stative",
    "verb.weather",
    "adj.ppl",
)
#: The demo's classes: noun files the shipped base never saw, each with >= 400 synsets.
TRANSFER_CLASSES = (
    "noun.animal",
    "noun.cognition",
    "noun.event",
    "noun.feeling",
    "noun.food",
    "noun.object",
    "noun.phenomenon",
    "noun.possession",
)
#: The classes the shipped base learns: the other noun files, but the two of < 100 synsets.
BASE_CLASSES = tuple(
    name
    for name in LEXNAMES
    if name.startswith("noun.")
    and name not in TRANSFER_CLASSES
    and name not in ("noun.Tops", "noun.motive")
)
TRAIN_PER_CLASS = 300
TEST_PER_CLASS = 100
SEED = 0
COLUMNS = ("id", "label", "text")


@dataclass(frozen=True)
class Gloss:
    """One synset: ``id`` (``offset-pos``), ``label`` (its lexicographer file), ``text``."""

    id: str
    label: str
    text: str


def parse_line(line: str, where: str) -> Gloss | None:
    """The synset of one ``data.POS`` line; ``None`` for a license line (leading spaces).

    Raises
    ------
    SourceError
        Naming ``where`` (file:line) when the line is not a synset line.
    """
    if line.startswith(" ") or not line.strip():
        return None
    head, bar, gloss = line.partition("|")
    fields = head.split()
    problem = None
    if not bar or len(fields) < 4:
        problem = "no 'offset lex_filenum ss_type ... | gloss' fields"
    elif not (fields[0].isdigit() and fields[1].isdigit()):
        problem = f"offset {fields[0]!r} and lex_filenum {fields[1]!r} must be numbers"
    elif int(fields[1]) >= len(LEXNAMES):
        problem = f"lex_filenum {fields[1]} is not a lexicographer file (00-{len(LEXNAMES) - 1})"
    if problem:
        raise SourceError(f"{where}: not a WordNet data line: {problem}; is it a data.POS file?")
    return Gloss(f"{fields[0]}-{fields[2]}", LEXNAMES[int(fields[1])], gloss.strip())


def read_synsets(paths: Iterable[str | Path]) -> Iterator[Gloss]:
    """Every synset of the ``data.POS`` files ``paths``, in file and line order."""
    for path in paths:
        try:
            with open(path, encoding="utf-8") as lines:
                for number, line in enumerate(lines, 1):
                    gloss = parse_line(line, f"{path}:{number}")
                    if gloss is not None:
                        yield gloss
        except OSError as exc:
            raise SourceError(
                f"cannot read {path}: {exc.strerror}; install Debian's wordnet-base "
                "(apt-get install wordnet-base) or pass --wordnet-dir"
            ) from exc


def by_class(glosses: Iterable[Gloss], classes: Sequence[str]) -> dict[str, list[Gloss]]:
    """The glosses of each of ``classes``, sorted by id (others dropped)."""
    chosen: dict[str, list[Gloss]] = {name: [] for name in classes}
    for gloss in glosses:
        if gloss.label in chosen:
            chosen[gloss.label].append(gloss)
    return {name: sorted(found, key=lambda g: g.id) for name, found in chosen.items()}


def draw(
    groups: dict[str, list[Gloss]], sizes: Sequence[int], seed: int = SEED
) -> list[list[Gloss]]:
    """Disjoint seeded draws of ``sizes[k]`` glosses per class (fewer where a class runs out),
    each in class order, then id order."""
    rng = np.random.default_rng(seed)
    parts: list[list[Gloss]] = [[] for _ in sizes]
    bounds = np.cumsum([0, *sizes])
    for found in groups.values():
        order = rng.permutation(len(found))
        for k, part in enumerate(parts):
            taken = order[bounds[k] : bounds[k + 1]]
            part.extend(sorted((found[i] for i in taken), key=lambda g: g.id))
    return parts


def to_csv(glosses: Iterable[Gloss]) -> str:
    """A CSV of :data:`COLUMNS` (a header, then one row a gloss)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows((g.id, g.label, g.text) for g in glosses)
    return out.getvalue()


def write_demo_csvs(wordnet_dir: str | Path, out: str | Path) -> dict[str, int]:
    """Write ``train.csv`` and ``test.csv`` of :data:`TRANSFER_CLASSES` into ``out``;
    returns each file's rows."""
    groups = by_class(read_synsets([Path(wordnet_dir) / "data.noun"]), TRANSFER_CLASSES)
    test, train = draw(groups, (TEST_PER_CLASS, TRAIN_PER_CLASS))  # test first: train's size
    # never changes the test set
    Path(out).mkdir(parents=True, exist_ok=True)
    rows = {}
    for name, part in (("train.csv", train), ("test.csv", test)):
        atomic_write_text(Path(out) / name, to_csv(part))
        rows[name] = len(part)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bottleneck_transfer.bench.wordnet`` (module text)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wordnet-dir", default=str(WORDNET_DIR), help="WordNet's dict folder.")
    parser.add_argument("--out", default="data/wordnet", help="Folder of train.csv, test.csv.")
    args = parser.parse_args(argv)
    try:
        rows = write_demo_csvs(args.wordnet_dir, args.out)
    except SourceError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    print(", ".join(f"{args.out}/{name}: {n} rows" for name, n in rows.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
