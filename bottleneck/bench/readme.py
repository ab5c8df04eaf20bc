"""The README's benchmark tables and figures, written from the committed JSON in ``data/bench``.

Every README table or figure that comes from a measurement is a block between marker lines::

    <!-- bench:NAME -->
    ...written by this module, never by hand...
    <!-- /bench:NAME -->

:data:`BLOCKS` says which JSON file each block is rendered from (and the command that wrote
that file); the renderers are the ones the commands print with. Run from the checkout::

    python -m bottleneck_transfer.bench.readme write      # rewrite the blocks and figures
    python -m bottleneck_transfer.bench.readme check      # exit 1 naming each stale block
    python -m bottleneck_transfer.bench.readme record-run runs/DIR -o data/bench/NAME.json

``record-run`` keeps what a ``bottleneck run`` folder says (its resolved spec's settings,
``report.json``, ``learning_curve.json`` and the run record) as one JSON file. Every JSON
that claims to measure a shipped spec holds ``spec`` and ``settings``;
:func:`settings_mismatches` compares those with the spec as it is now, so a report measured
before the spec changed is caught (``tests/bench/test_readme.py``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bottleneck_transfer.atomic import atomic_write_text
from bottleneck_transfer.errors import BottleneckError

#: Where the JSON lives, relative to the checkout.
DATA = Path("data/bench")
README = Path("README.md")
#: What a recorded run calls its cache store folder (the default store, caches/ beside the spec).
STORE_LABEL = "caches"


@dataclass(frozen=True)
class Block:
    """A README block: its JSON file (in :data:`DATA`), the commands that wrote the file,
    and how it renders that file's contents as Markdown lines. A ``pending`` block's file
    may be missing (a spec not yet measured): it then renders :func:`_pending`'s line."""

    file: str
    commands: tuple[str, ...]
    render: Callable[[dict[str, Any]], list[str]]
    pending: bool = False


def _views(report: dict[str, Any]) -> list[str]:
    from bottleneck_transfer.bench.accuracy import format_views

    return format_views(report["views"])


def _float16(report: dict[str, Any]) -> list[str]:
    from bottleneck_transfer.bench.accuracy import format_float16

    return format_float16(report["float16_heads"])


def _run_compare(record: dict[str, Any]) -> list[str]:
    from bottleneck_transfer.heads.compare import Comparison
    from bottleneck_transfer.heads.report import format_table

    table = format_table(Comparison.from_dict(record["comparison"]))
    curve = ["", "... (the learning curve)", ""] if "learning_curve" in record else []
    return ["```", table, *curve, *record["shown_summary"], "```"]


def _statistics(report: dict[str, Any]) -> list[str]:
    from bottleneck_transfer.bench.statistics import format_statistics

    return format_statistics(report["statistics"])[1:]  # without its leading blank line


def _selection(result: dict[str, Any]) -> list[str]:
    from bottleneck_transfer.bench.selection import format_null_draws

    return format_null_draws(result)


def _demo_curve(record: dict[str, Any]) -> list[str]:
    from bottleneck_transfer.heads.learning_curve import LearningCurve, curve_rows

    curve = LearningCurve.from_dict(record["learning_curve"])
    header, cells = curve_rows(curve)
    return [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
        *("| " + " | ".join(row) + " |" for row in cells),
        "",
        curve.sentence,
        "",
        f"In this run the curve took {record['timings']['learning_curve']:.0f} s and the "
        f"comparison on all rows {record['timings']['compare']:.0f} s (`run.json` timings).",
    ]


def _rank(report: dict[str, Any]) -> list[str]:
    from bottleneck_transfer.bench.rank import format_rank_bench

    return format_rank_bench(report)


def _scale(figures: dict[str, Any]) -> list[str]:
    from bottleneck_transfer.bench.scale import format_scale

    return format_scale(figures)


def _rank_cost(report: dict[str, Any]) -> list[str]:
    from bottleneck_transfer.bench.rank_cost import format_rank_cost

    return format_rank_cost(report)


ACCURACY = ("bottleneck bench --parts views,float16-heads --out data/bench/accuracy.json",)
STATISTICS = ("bottleneck bench --parts statistics --out data/bench/statistics.json",)
SELECTION = (
    "python -m bottleneck_transfer.bench.selection --draws 200 --heads 4 "
    "> data/bench/selection.json",
)
DEMO_RUN = (
    "bottleneck run pipelines/fashion_mnist.toml",
    "python -m bottleneck_transfer.bench.readme record-run runs/DIR "
    "-o data/bench/fashion_mnist_run.json",
)
DIGITS_RUN = (
    "bottleneck run pipelines/digits_fashion_base.toml",
    "python -m bottleneck_transfer.bench.readme record-run runs/DIR "
    "-o data/bench/digits_fashion_base_run.json",
)
WORDNET_RUN = (
    "bottleneck run pipelines/wordnet_glosses.toml",
    "python -m bottleneck_transfer.bench.readme record-run runs/DIR "
    "-o data/bench/wordnet_glosses_run.json",
)
RANK = ("python -m bottleneck_transfer.bench.rank -o data/bench/rank.json",)
TARGETS = ("python -m bottleneck_transfer.bench.targets -o data/bench/targets.json",)


def _targets(payload: dict[str, Any]) -> list[str]:
    from bottleneck_transfer.bench.targets import format_targets

    return format_targets(payload)


_SCALE_RUN = "--memory-budget 1G --dense dense:epochs=3"
_SCALE_2M_ORDER = " ".join(
    f'--command "{name}"'
    for name in ("train logreg", "evaluate", "cache export", "compare holdout", "train dense")
)
SCALE = (
    f"python -m bottleneck_transfer.bench.scale --rows 200000 {_SCALE_RUN} -o scale-200k.json",
    f"python -m bottleneck_transfer.bench.scale --rows 2000000 {_SCALE_RUN} {_SCALE_2M_ORDER} "
    "-o scale-2m.json",
    "python -m bottleneck_transfer.bench.scale --merge scale-200k.json --merge scale-2m.json "
    "-o data/bench/scale.json",
)
RANK_COST = ("python -m bottleneck_transfer.bench.rank_cost -o data/bench/rank_cost.json",)
BLOCKS: dict[str, Block] = {
    "views": Block("accuracy.json", ACCURACY, _views),
    "float16-heads": Block("accuracy.json", ACCURACY, _float16),
    "demo-compare": Block("fashion_mnist_run.json", DEMO_RUN, _run_compare),
    "demo-learning-curve": Block("fashion_mnist_run.json", DEMO_RUN, _demo_curve),
    "digits-compare": Block("digits_fashion_base_run.json", DIGITS_RUN, _run_compare),
    "wordnet-compare": Block("wordnet_glosses_run.json", WORDNET_RUN, _run_compare, True),
    "wordnet-learning-curve": Block("wordnet_glosses_run.json", WORDNET_RUN, _demo_curve, True),
    "statistics": Block("statistics.json", STATISTICS, _statistics),
    "selection": Block("selection.json", SELECTION, _selection),
    "rank": Block("rank.json", RANK, _rank),
    "targets": Block("targets.json", TARGETS, _targets),
    "scale": Block("scale.json", SCALE, _scale),
    "rank-cost": Block("rank_cost.json", RANK_COST, _rank_cost),
}


def _source_line(block: Block, payload: dict[str, Any]) -> str:
    """Where a block's numbers come from: the file, the command, the machine and when."""
    machine = payload.get("machine")
    where = ""
    if machine:
        where = (
            f"; {machine['cpu']}, {machine['cores']} cores, load average "
            f"{machine['load_average_start']} → {machine.get('load_average_end')}, "
            f"{payload['seconds']:.0f} s"
        )
    elif "started_at" in payload:
        where = f"; run started {payload['started_at']}, {payload['timings']['total']:.0f} s"
    return f"<sub>From `{DATA / block.file}`, written by {_commands(block)}{where}.</sub>"


def _commands(block: Block) -> str:
    return ", then ".join(f"`{command}`" for command in block.commands)


def _pending(block: Block) -> str:
    """What a pending block says until its JSON is committed: how to measure it."""
    write = "`python -m bottleneck_transfer.bench.readme write`"
    return f"<sub>Not measured yet: {_commands(block)}, then {write}.</sub>"


def _load(root: Path, file: str) -> dict[str, Any]:
    path = root / DATA / file
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BottleneckError(f"cannot read the benchmark JSON {path}: {exc}") from exc


def render_blocks(root: str | Path = ".") -> dict[str, str]:
    """Each block's text, rendered from the JSON under ``root``'s :data:`DATA`."""
    root = Path(root)
    rendered = {}
    for name, block in BLOCKS.items():
        if block.pending and not (root / DATA / block.file).exists():
            rendered[name] = _pending(block)
            continue
        payload = _load(root, block.file)
        lines = [*block.render(payload), "", _source_line(block, payload)]
        rendered[name] = "\n".join(lines)
    return rendered


def _marker(name: str) -> re.Pattern[str]:
    name = re.escape(name)
    return re.compile(rf"<!-- bench:{name} -->\n(.*?)\n?<!-- /bench:{name} -->", re.DOTALL)


def readme_blocks(text: str) -> dict[str, str]:
    """The blocks a README holds now, by name (an empty block holds "")."""
    found = re.findall(r"<!-- bench:([\w-]+) -->\n(.*?)\n?<!-- /bench:\1 -->", text, re.DOTALL)
    return dict(found)


def splice(text: str, blocks: dict[str, str]) -> str:
    """``text`` with every block's contents replaced by ``blocks``.

    Raises
    ------
    BottleneckError
        When a block has no markers in ``text``, or ``text`` has a block nobody renders.
    """
    unknown = sorted(set(readme_blocks(text)) - set(blocks))
    if unknown:
        raise BottleneckError(
            f"README block {unknown[0]!r} is rendered by nothing; remove its markers or add "
            "it to bottleneck_transfer.bench.readme.BLOCKS"
        )
    for name, content in blocks.items():
        pattern = _marker(name)
        if not pattern.search(text):
            raise BottleneckError(
                f"README has no block {name!r}: put '<!-- bench:{name} -->' and "
                f"'<!-- /bench:{name} -->' on lines of their own where it goes"
            )
        block = f"<!-- bench:{name} -->\n{content}\n<!-- /bench:{name} -->"
        text = pattern.sub(lambda _, block=block: block, text, count=1)
    return text


def _curve_figure(record: dict[str, Any], path: Path) -> None:
    from bottleneck_transfer.heads.learning_curve import LearningCurve, plot_curve

    plot_curve(LearningCurve.from_dict(record["learning_curve"]), path)


def _accuracy_figure(record: dict[str, Any], path: Path) -> None:
    from bottleneck_transfer.heads.compare import Comparison
    from bottleneck_transfer.heads.report import plot_accuracy

    plot_accuracy(Comparison.from_dict(record["comparison"]), path)


#: The README's figures (relative to the checkout): the JSON file each is drawn from, and how.
FIGURES: dict[Path, tuple[str, Callable[[dict[str, Any], Path], None]]] = {
    Path("docs/learning_curve.png"): ("fashion_mnist_run.json", _curve_figure),
    Path("docs/report-accuracy.png"): ("fashion_mnist_run.json", _accuracy_figure),
}


def write_figures(root: str | Path = ".") -> list[Path]:
    """Draw :data:`FIGURES` from the JSON under ``root``; returns their paths."""
    root = Path(root)
    for figure, (file, draw) in FIGURES.items():
        (root / figure).parent.mkdir(parents=True, exist_ok=True)
        draw(_load(root, file), root / figure)
    return [root / figure for figure in FIGURES]


def write_readme(root: str | Path = ".") -> list[str]:
    """Rewrite the README's blocks and figures under ``root``; returns the changed blocks."""
    root = Path(root)
    path = root / README
    text = path.read_text(encoding="utf-8")
    blocks = render_blocks(root)
    changed = [name for name, content in blocks.items() if readme_blocks(text).get(name) != content]
    atomic_write_text(path, splice(text, blocks))
    write_figures(root)
    return changed


def stale_blocks(root: str | Path = ".") -> list[str]:
    """The blocks whose README text differs from what the JSON renders (none: up to date)."""
    root = Path(root)
    text = (root / README).read_text(encoding="utf-8")
    blocks = render_blocks(root)
    splice(text, blocks)  # every block has its markers, and no other block is there
    held = readme_blocks(text)
    return [name for name, content in blocks.items() if held.get(name) != content]


def _claims(value: Any, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every part of a JSON document that names the spec it measures."""
    if isinstance(value, dict):
        if "spec" in value and "settings" in value:
            yield where, value
        for key, item in value.items():
            yield from _claims(item, f"{where}.{key}")
    elif isinstance(value, list):
        for k, item in enumerate(value):
            yield from _claims(item, f"{where}[{k}]")


def spec_claims(root: str | Path = ".") -> list[tuple[str, str, dict[str, Any]]]:
    """``(where, spec, settings)`` of every report in :data:`DATA` that measures a spec."""
    root = Path(root)
    claims = []
    for path in sorted((root / DATA).glob("*.json")):
        document = json.loads(path.read_text(encoding="utf-8"))
        for where, claim in _claims(document, path.name):
            claims.append((where, claim["spec"], claim["settings"]))
    return claims


def settings_mismatches(root: str | Path = ".") -> list[str]:
    """One line per report whose recorded settings differ from its spec as it is now."""
    from bottleneck_transfer.bench.specs import spec_settings

    root = Path(root)
    lines = []
    for where, spec, settings in spec_claims(root):
        now = spec_settings(root / spec)
        for section in sorted(set(now) | set(settings)):
            if now.get(section) != settings.get(section):
                lines.append(
                    f"{where}: [{section}] measured {settings.get(section)} but {spec} now "
                    f"says {now.get(section)}; rerun the benchmark"
                )
    return lines


def _relabel(value: Any, prefixes: dict[str, str]) -> Any:
    if isinstance(value, str):
        for prefix, label in prefixes.items():
            value = value.replace(prefix, label)
        return value
    if isinstance(value, dict):
        return {k: _relabel(v, prefixes) for k, v in value.items()}
    if isinstance(value, list):
        return [_relabel(v, prefixes) for v in value]
    return value


def record_run(run_dir: str | Path, root: str | Path = ".") -> dict[str, Any]:
    """One JSON document of a ``bottleneck run`` folder (see the module text).

    Paths are written relative to ``root`` (the checkout), and the cache store's folder as
    :data:`STORE_LABEL`, so the document does not depend on where the run happened.
    """
    from bottleneck_transfer.bench.specs import settings_of
    from bottleneck_transfer.pipeline.run import shown_summary

    run_dir, root = Path(run_dir).resolve(), Path(root).resolve()

    def read(name: str) -> dict[str, Any]:
        payload = json.loads((run_dir / name).read_text(encoding="utf-8"))
        payload.pop("files", None)
        return payload

    record = read("run.json")
    spec = Path(record["spec"])
    store = Path(record["extractions"][0]["cache"]).parent
    document = {
        "spec": spec.relative_to(root).as_posix(),
        "settings": settings_of(read("spec.resolved.json"), spec.parent),
        "started_at": record["started_at"],
        "software": record["software"],
        "timings": record["timings"],
        "shown_summary": shown_summary(record),
        "comparison": read("report/report.json"),
    }
    if (run_dir / "report/learning_curve.json").exists():
        document["learning_curve"] = read("report/learning_curve.json")
    return _relabel(document, {f"{store}/": f"{STORE_LABEL}/", f"{root}/": ""})


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bottleneck_transfer.bench.readme write|check|record-run`` (module text)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("write", "check", "record-run"))
    parser.add_argument("run_dir", nargs="?", help="record-run: the run folder.")
    parser.add_argument("-o", "--out", help="record-run: the JSON file to write.")
    parser.add_argument("--root", default=".", help="The checkout (default: here).")
    args = parser.parse_args(argv)
    try:
        if args.action == "record-run":
            if not args.run_dir or not args.out:
                parser.error("record-run needs RUN_DIR and -o FILE")
            document = record_run(args.run_dir, args.root)
            atomic_write_text(args.out, json.dumps(document, indent=2) + "\n")
            return 0
        if args.action == "write":
            changed = write_readme(args.root)
            figures = ", ".join(str(figure) for figure in FIGURES)
            print(f"rewrote {', '.join(changed) or 'no block (up to date)'}; drew {figures}")
            return 0
        problems = [
            f"README block {name!r} differs from its JSON; run "
            "python -m bottleneck_transfer.bench.readme write"
            for name in stale_blocks(args.root)
        ] + settings_mismatches(args.root)
    except BottleneckError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    for line in problems:
        print(line, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
