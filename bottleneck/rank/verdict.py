"""The plain verdict of a ranking: order, which gaps are real, cost, and what to run next.

Candidates are ranked by :data:`RANK_BY`: the probe's cross-validated accuracy (LogME breaks
ties). On the benchmark (``bench/rank.py``) the probe's sample order and LogME's agreed with
the full-collection probe about equally (Kendall's tau about 0.8), the H-score's did not; the
probe's gaps come with paired tests, so it orders. The best is tested against every other on
the same folds (:func:`heads.stats.family_tests`: the Nadeau–Bengio corrected t-test per
fold, Holm-adjusted within this one family), so "tied" and "real" mean what they mean in
``compare``. A candidate that loses significantly to its own baselines is flagged as
negative transfer. :func:`write_report` writes ``report.json``, ``report.md``,
``report.html`` and ``cost_accuracy.png`` (accuracy against images/s per base, log axis,
with the raw-pixel baseline's accuracy for reference).
"""

from __future__ import annotations

import html
import json
import math
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from bottleneck_transfer.atomic import atomic_path, atomic_write_text, make_folder
from bottleneck_transfer.heads.stats import ALPHA, CV_INTERVALS, CV_TEST, family_tests
from bottleneck_transfer.rank.candidates import Candidate
from bottleneck_transfer.rank.probe import PROBE, Probe

#: The family the best base's paired tests form (Holm-adjusted within it).
FAMILY = "bases vs best"
#: The score that orders the bases (the report says it): the probe's accuracy, then LogME.
RANK_BY = "probe"
RANK_BY_TEXT = "the probe's cross-validated accuracy (LogME breaks ties)"
REPORT_FILES = ("report.json", "report.md", "report.html", "cost_accuracy.png")
FIGURE = "cost_accuracy.png"


@dataclass
class Cost:
    """What a base costs, measured on the sample, and the full job's cost estimated from it.

    ``seconds_per_image`` is the sample extraction's wall time per image (decoding, the model
    and writing; its first call's compilation included, so an upper bound on small samples);
    memory is the base's weights and each image's stored features.
    """

    seconds_per_image: float
    weights_bytes: int
    feature_bytes_per_image: int
    collection_images: int

    @property
    def images_per_second(self) -> float:
        return 1.0 / self.seconds_per_image if self.seconds_per_image > 0 else math.inf

    @property
    def full_seconds(self) -> float:
        """Estimated time to extract the whole collection."""
        return self.seconds_per_image * self.collection_images

    @property
    def full_cache_bytes(self) -> int:
        """The whole collection's cache size (features only)."""
        return self.feature_bytes_per_image * self.collection_images

    def to_dict(self) -> dict[str, Any]:
        return {
            "seconds_per_image": self.seconds_per_image,
            "images_per_second": self.images_per_second,
            "weights_bytes": self.weights_bytes,
            "feature_bytes_per_image": self.feature_bytes_per_image,
            "collection_images": self.collection_images,
            "full_job_seconds": self.full_seconds,
            "full_cache_bytes": self.full_cache_bytes,
        }


@dataclass
class BaseResult:
    """One candidate's scores on the sample."""

    label: str
    cache: Path
    dim: int
    logme: float
    hscore: float
    probe: Probe
    cost: Cost
    notes: list[str] = field(default_factory=list)
    test: dict[str, Any] | None = None
    rank: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "base": self.label,
            "sample_cache": str(self.cache),
            "dim": self.dim,
            "logme": self.logme,
            "hscore": self.hscore,
            "probe": self.probe.to_dict(),
            "cost": self.cost.to_dict(),
            "vs_best": self.test,
            "notes": self.notes,
        }


@dataclass
class Ranking:
    """The result of :func:`~bottleneck_transfer.rank.ranking.rank_bases`: ``results`` best
    first, the sentence that judges them, and the command that extracts the winner."""

    source: str
    sample: dict[str, Any]
    results: list[BaseResult]
    verdict: str
    command: str
    estimate_agreement: dict[str, Any]
    seconds: float
    report: dict[str, str] = field(default_factory=dict)
    #: The best candidate itself (its base and settings), to build it again.
    chosen: Candidate | None = None
    #: The best candidate's built base (not saved), so its full extraction in this process
    #: does not build it again.
    chosen_base: Any = field(default=None, repr=False)

    @property
    def best(self) -> BaseResult:
        return self.results[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "sample": self.sample,
            "winner": self.best.label,
            "ranked_by": RANK_BY_TEXT,
            "verdict": self.verdict,
            "command": self.command,
            "ranking": [r.to_dict() for r in self.results],
            "estimate_agreement": self.estimate_agreement,
            "intervals": CV_INTERVALS,
            "test": f"{CV_TEST}; Holm-adjusted within the family {FAMILY!r}",
            "seconds": self.seconds,
            "report": self.report,
        }


def rank_results(results: list[BaseResult]) -> list[BaseResult]:
    """``results`` best first (by :data:`RANK_BY`), numbered, each tested against the best
    (its ``test``: gap in probe accuracy points, interval, Holm-adjusted p)."""
    ranked = sorted(results, key=lambda r: (-r.probe.accuracy, -r.logme))
    for rank, result in enumerate(ranked, 1):
        result.rank = rank
    best, others = ranked[0], ranked[1:]
    for other in others:
        if other.probe.eval_ids != best.probe.eval_ids:
            raise ValueError(f"{other.label} was scored on other rows than {best.label}")
    pairs = [(best.probe.correct, other.probe.correct) for other in others]
    tests = family_tests(pairs, FAMILY, best.probe.eval_folds, best.probe.test_fraction)
    for other, test in zip(others, tests, strict=True):
        other.test = test
    return ranked


def estimate_agreement(results: list[BaseResult]) -> dict[str, Any]:
    """Kendall's tau between each training-free estimate's order and the probe's."""
    from scipy.stats import kendalltau

    if len(results) < 3:
        return {"note": "needs 3 or more candidates"}
    accuracy = [r.probe.accuracy for r in results]
    return {
        name: float(kendalltau([getattr(r, name) for r in results], accuracy).statistic)
        for name in ("logme", "hscore")
    }


def verdict_text(ranked: list[BaseResult]) -> str:
    """One paragraph: who leads, whether the lead is real, who is tied, negative transfer."""
    best = ranked[0]
    lead = f"{best.label} ranks first (probe accuracy {best.probe.accuracy:.3f})"
    if len(ranked) == 1:
        parts = [f"{lead}; it was the only candidate."]
    else:
        tied = [r for r in ranked[1:] if r.test["p_holm"] >= ALPHA]
        if not tied:
            parts = [f"{lead}; the lead is real: every other base is significantly worse."]
        else:
            fastest = max([best, *tied], key=lambda r: r.cost.images_per_second)
            parts = [
                f"{lead}; {', '.join(r.label for r in tied)} "
                f"{'is' if len(tied) == 1 else 'are'} statistically tied with it (Holm-adjusted "
                f"p >= {ALPHA}): pick among them on cost"
                + (
                    f" ({fastest.label} is the fastest, {fastest.cost.images_per_second:.0f} "
                    "images/s)."
                    if fastest is not best
                    else f" ({best.label} is also the fastest)."
                )
            ]
    negative = [r for r in ranked if r.probe.negative]
    for result in negative:
        parts.append(f"Negative transfer: {result.label}: {result.probe.transfer['sentence']}")
    if best.probe.negative:
        parts.append(
            "Even the best candidate loses to a baseline: no candidate transfers to these images."
        )
    return " ".join(parts)


def extract_command(
    source_spec: str, source_options: dict[str, Any], settings: dict[str, Any], out: str
) -> str:
    """The ``bottleneck extract`` command line for the whole collection with one base."""
    words = ["bottleneck", "extract", source_spec]
    for key in ("classes", "limit", "groups"):
        if source_options.get(key) is not None:
            words += [f"--{key}", str(source_options[key])]
    for key, value in settings.items():
        if value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        words += [flag] if value is True else [flag, str(value)]
    words += ["-o", out, "--update"]
    return shlex.join(words)


def _size(n_bytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n_bytes < 1024 or unit == "TiB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    raise AssertionError


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def table(ranking: Ranking) -> tuple[list[str], list[list[str]]]:
    """The ranking as a header and rows of text cells."""
    header = [
        "#",
        "base",
        "probe acc [95% CI]",
        "vs best",
        "LogME",
        "H-score",
        "img/s",
        "full job",
        "cache",
        "baselines",
    ]
    rows = []
    for r in ranking.results:
        low, high = r.probe.interval
        if r.test is None:
            versus = "best"
        else:
            a, b = r.test["interval_points"]
            real = "real" if r.test["p_holm"] < ALPHA else "tied"
            versus = (
                f"{r.test['gap_points']:+.1f} pts [{a:+.1f}, {b:+.1f}] "
                f"p={r.test['p_holm']:.2g} {real}"
            )
        base_cells = ", ".join(
            f"{name} {value['accuracy']:.3f}" for name, value in r.probe.baselines.items()
        )
        rows.append(
            [
                str(r.rank),
                r.label + (" (negative transfer)" if r.probe.negative else ""),
                f"{r.probe.accuracy:.3f} [{low:.3f}, {high:.3f}]",
                versus,
                f"{r.logme:.3f}",
                f"{r.hscore:.2f}",
                f"{r.cost.images_per_second:.0f}",
                _duration(r.cost.full_seconds),
                _size(r.cost.full_cache_bytes),
                base_cells or "-",
            ]
        )
    return header, rows


def format_text(ranking: Ranking) -> str:
    """The ranking for a terminal: the table, the verdict and the next command."""
    header, rows = table(ranking)
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        f"Ranked {len(rows)} bases on a sample of {ranking.sample['images']} images "
        f"({ranking.sample['size']}, seed {ranking.sample['seed']}) of {ranking.source} "
        f"({ranking.sample['collection_images']} images); {ranking.seconds:.1f} s.",
        "",
        *(
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in [header, *rows]
        ),
        "",
        f"(Ranked by {RANK_BY_TEXT}, the {PROBE}; {CV_INTERVALS}; gaps: {CV_TEST}, "
        "Holm-adjusted. Full job: the sample's time per "
        "image times the collection.)",
        "",
        ranking.verdict,
        "",
        "Extract the chosen base for the whole collection (reuses its sample rows):",
        f"  {ranking.command}",
    ]
    return "\n".join(lines)


def cost_accuracy_figure(ranking: Ranking):
    """Probe accuracy (with its interval) against images/s per base; log x axis."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.5), layout="constrained")
    axes = figure.add_subplot()
    for r in ranking.results:
        low, high = r.probe.interval
        colour = "tab:red" if r.probe.negative else ("tab:blue" if r.rank == 1 else "tab:gray")
        x = r.cost.images_per_second
        axes.errorbar(
            [x],
            [r.probe.accuracy],
            yerr=[[r.probe.accuracy - low], [high - r.probe.accuracy]],
            fmt="o",
            color=colour,
            capsize=4,
        )
        axes.annotate(
            r.label, (x, r.probe.accuracy), xytext=(6, 4), textcoords="offset points", fontsize=8
        )
    pixels = [
        r.probe.baselines["raw-pixels"]["accuracy"]
        for r in ranking.results
        if "raw-pixels" in r.probe.baselines
    ]
    if pixels:
        axes.axhline(max(pixels), color="0.5", linestyle=":", label="raw pixels (probe)")
        axes.legend(loc="lower left", frameon=False)
    axes.set_xscale("log")
    axes.set_xlabel("images/s on this machine (sample extraction; log scale)")
    axes.set_ylabel("probe accuracy (95% corrected t-interval)")
    axes.set_title(f"Cost vs accuracy on a {ranking.sample['size']} sample")
    axes.spines[["top", "right"]].set_visible(False)
    return figure


def _markdown(ranking: Ranking) -> str:
    header, rows = table(ranking)
    lines = [
        f"# Which base? {ranking.source}",
        "",
        f"Sample: {ranking.sample['images']} images ({ranking.sample['size']}, seed "
        f"{ranking.sample['seed']}) of {ranking.sample['collection_images']}.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
        f"Ranked by {RANK_BY_TEXT}, the {PROBE}. {CV_INTERVALS}. Gaps: {CV_TEST}, "
        f"Holm-adjusted within {FAMILY!r}.",
        "",
        f"**Verdict.** {ranking.verdict}",
        "",
        f"![cost vs accuracy]({FIGURE})",
        "",
        "Extract the chosen base for the whole collection (reuses its sample rows):",
        "",
        f"    {ranking.command}",
    ]
    return "\n".join(lines) + "\n"


def _html(ranking: Ranking) -> str:
    header, rows = table(ranking)
    cells = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    head = "".join(f"<th>{html.escape(c)}</th>" for c in header)
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Which base?</title>"
        "<style>body{font-family:sans-serif;max-width:70em}td,th{padding:2px 8px;"
        "border-bottom:1px solid #ddd;text-align:left}</style></head><body>"
        f"<h1>Which base? {html.escape(ranking.source)}</h1>"
        f"<p>Sample: {ranking.sample['images']} images ({html.escape(ranking.sample['size'])}"
        f", seed {ranking.sample['seed']}) of {ranking.sample['collection_images']}.</p>"
        f"<table><tr>{head}</tr>{cells}</table>"
        f"<p>Ranked by {html.escape(RANK_BY_TEXT)}, the {html.escape(PROBE)}. "
        f"{html.escape(CV_INTERVALS)}. Gaps: {html.escape(CV_TEST)}, Holm-adjusted.</p>"
        f"<p><b>Verdict.</b> {html.escape(ranking.verdict)}</p>"
        f"<img src='{FIGURE}' alt='cost vs accuracy'>"
        "<p>Extract the chosen base for the whole collection (reuses its sample rows):</p>"
        f"<pre>{html.escape(ranking.command)}</pre></body></html>\n"
    )


def write_report(ranking: Ranking, directory: str | Path) -> dict[str, str]:
    """Write the report folder (:data:`REPORT_FILES`); returns each file's path by name."""
    directory = make_folder(directory)
    paths = {name: directory / name for name in REPORT_FILES}
    ranking.report = {name: str(path) for name, path in paths.items()}
    with atomic_path(paths[FIGURE]) as tmp:
        cost_accuracy_figure(ranking).savefig(tmp, dpi=120, format="png")
    atomic_write_text(paths["report.md"], _markdown(ranking))
    atomic_write_text(paths["report.html"], _html(ranking))
    atomic_write_text(paths["report.json"], json.dumps(ranking.to_dict(), indent=2, default=_json))
    return ranking.report


def _json(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (Path, np.ndarray)):
        return str(value) if isinstance(value, Path) else value.tolist()
    raise TypeError(f"not JSON: {type(value).__name__}")
