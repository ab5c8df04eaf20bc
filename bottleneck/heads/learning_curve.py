"""Learning curves: accuracy against the number of labelled images per class.

For each size n (labels per class), ``repeats`` seeded stratified subsets of the training
rows are drawn: n images per class on average, in the training rows' own class ratio (so
"all" is no more or less balanced than the subsets), and nested: repeat r's subset of n
images lies within its subset of any larger size. Each subset goes
through :func:`~bottleneck_transfer.heads.compare.compare_heads` with the same evaluation
rows, so every head and baseline is fitted on the same subset (and tuned, where asked, on
that subset only) and scored on the same rows: the test cache, or without one a stratified
quarter of the training rows held out once. A point is the mean accuracy over the repeats
with a 95 % t-interval over the subsets widened by the evaluation rows' own sampling noise
(:func:`~bottleneck_transfer.heads.stats.draw_interval`: the rows are fixed, so the spread
over subsets alone leaves that out); the ``all`` size is one fit, with compare's 95 %
Clopper–Pearson interval.

In each draw the head is chosen on that draw's training rows only (compare's choice, on a
validation split carved from the subset): the ``chosen head`` line is that head's accuracy
per draw, and with several baseline rows the ``chosen baseline`` line is the baseline row
chosen the same way. The transfer gain at a size is compare's: the chosen head minus the
chosen baseline, in accuracy points, paired subset by subset, so it equals the difference
of those two lines in the table and the figure; the report lists each draw's choice and
its validation score. Transfer is *worth it*
at a size when the gain's 95 % interval (the same widened t-interval, of the paired per-row
differences) lies above zero (at ``all``: compare's transfer test, p < 0.05), and
the curve's sentence says from which size on that holds, or that it never does.
"""

from __future__ import annotations

import functools
import json
import math
import time
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from bottleneck_transfer.atomic import atomic_path, atomic_write_text
from bottleneck_transfer.display import Display
from bottleneck_transfer.errors import BottleneckWarning, HeadError
from bottleneck_transfer.heads.compare import (
    DEFAULT_HEADS,
    Comparison,
    Row,
    compare_heads,
)
from bottleneck_transfer.heads.figures import new_figure
from bottleneck_transfer.heads.memo import FitMemo
from bottleneck_transfer.heads.selection import majority_rate
from bottleneck_transfer.heads.splits import shuffle_split, stratified_subset, subset_counts
from bottleneck_transfer.heads.stats import draw_interval
from bottleneck_transfer.heads.training import DataInput, LabeledData, as_data, check_labels

if TYPE_CHECKING:
    from matplotlib.figure import Figure

ALL = "all"
#: Share of the training rows held out (stratified, seeded) when there is no test cache.
HOLDOUT_FRACTION = 0.25
#: Default repeats at n labels per class: ceil(REPEAT_ROWS / n), between these bounds.
MIN_REPEATS, MAX_REPEATS, REPEAT_ROWS = 3, 10, 200
#: Bootstrap resamples at sizes with several repeats (their intervals come from the repeats).
_REPEAT_BOOTSTRAP = 100
LEVEL = 0.95
CURVE_FILES = ("learning_curve.png", "learning_curve.md", "learning_curve.json")
#: The line of the head chosen in each draw on its training rows, and of the baseline row
#: chosen likewise (shown when a draw has several baseline rows).
CHOSEN, CHOSEN_BASELINE = "chosen head", "chosen baseline"

Size = int | str


def parse_sizes(sizes: str | Sequence[int | str]) -> list[Size]:
    """``"5,10,50,all"`` or ``[5, 10, "all"]`` → sorted unique sizes, ``"all"`` last.

    Raises
    ------
    HeadError
        For anything but whole numbers >= 1 and ``all``.
    """
    values = sizes.split(",") if isinstance(sizes, str) else list(sizes)
    out: set[int] = set()
    has_all = False
    for value in values:
        text = str(value).strip().lower()
        if text == ALL:
            has_all = True
        elif text.isdigit() and int(text) >= 1 and not isinstance(value, bool):
            out.add(int(text))
        else:
            raise HeadError(
                "learning-curve sizes are labels per class (whole numbers >= 1) or 'all', "
                f"e.g. 5,10,50,all. Received: {value!r}"
            )
    if not out and not has_all:
        raise HeadError("give at least one learning-curve size, e.g. 5,10,50,all")
    return [*sorted(out), *([ALL] if has_all else [])]


def default_repeats(n: int) -> int:
    """Repeats at ``n`` labels per class: more for small subsets, whose accuracy varies most."""
    return int(np.clip(math.ceil(REPEAT_ROWS / n), MIN_REPEATS, MAX_REPEATS))


def _correct(comparison: Comparison, row: Row) -> np.ndarray:
    """1/0: whether ``row`` gets each of the comparison's scored rows right."""
    return (row.predictions == comparison.eval_labels).astype(np.float64)


def repeat_interval(scores: list[np.ndarray], bounds: tuple[float, float]) -> tuple[float, float]:
    """The 95 % interval of the mean over repeats of per-row ``scores`` on the same rows:
    :func:`~bottleneck_transfer.heads.stats.draw_interval` (over the repeats, widened by
    the rows' own sampling variance)."""
    stats = draw_interval(np.stack(scores), confidence=LEVEL, bounds=bounds)
    return stats["low"], stats["high"]


@dataclass
class Point:
    """One line (head or baseline) at one size: accuracy per repeat, mean and interval."""

    line: str
    size: Size
    accuracies: list[float]
    mean: float
    interval: tuple[float, float]
    baseline: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready point."""
        return {
            "line": self.line,
            "baseline": self.baseline,
            "size": self.size,
            "accuracies": self.accuracies,
            "mean": self.mean,
            "interval_95": list(self.interval),
        }

    @classmethod
    def from_dict(cls, summary: dict[str, Any]) -> Point:
        """Rebuild a point from :meth:`to_dict`."""
        return cls(
            line=summary["line"],
            size=summary["size"],
            accuracies=summary["accuracies"],
            mean=summary["mean"],
            interval=tuple(summary["interval_95"]),
            baseline=summary["baseline"],
        )


@dataclass
class Gain:
    """The transfer gain at one size: the chosen head minus the chosen baseline, in accuracy
    points; ``choices`` says what each draw chose and its validation score."""

    size: Size
    points: list[float]
    mean: float
    interval: tuple[float, float]
    baseline: str
    verdict: str
    choices: list[dict[str, Any]] = field(default_factory=list)

    @property
    def worth(self) -> bool:
        """Whether the transferred features beat every baseline significantly at this size."""
        return self.verdict == "gain"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready gain."""
        return {
            "size": self.size,
            "gain_points": self.points,
            "mean": self.mean,
            "interval_95": list(self.interval),
            "best_baseline": self.baseline,
            "verdict": self.verdict,
            "choices": self.choices,
        }

    @classmethod
    def from_dict(cls, summary: dict[str, Any]) -> Gain:
        """Rebuild a gain from :meth:`to_dict`."""
        return cls(
            size=summary["size"],
            points=summary["gain_points"],
            mean=summary["mean"],
            interval=tuple(summary["interval_95"]),
            baseline=summary["best_baseline"],
            verdict=summary["verdict"],
            choices=summary["choices"],
        )


@dataclass(repr=False)
class LearningCurve(Display):
    """The result of :func:`learning_curve`."""

    sizes: list[Size]
    per_class: dict[str, float]
    repeats: dict[str, int]
    lines: list[str]
    baseline_lines: list[str]
    points: list[Point]
    gains: list[Gain]
    worth_from: Size | None
    sentence: str
    evaluation: str
    n_eval_rows: int
    tuned: bool
    seconds: float
    seconds_per_size: dict[str, float]
    notes: list[str] = field(default_factory=list)
    majority_rate: float | None = None

    def _display_summary(self) -> dict[str, Any]:
        return {
            "sizes": ", ".join(str(size) for size in self.sizes),
            "lines": ", ".join([*self.lines, *self.baseline_lines]),
            "scored on": self.evaluation,
            "worth from": self.worth_from,
            "verdict": self.sentence,
            "seconds": self.seconds,
        }

    def _display_rows(self) -> list[dict[str, Any]]:
        """One row per line and size: labels per class, mean accuracy and its 95% interval."""
        return [
            {
                "line": point.line,
                "size": str(point.size),
                "labels_per_class": self.per_class[str(point.size)],
                "baseline": point.baseline,
                "accuracy": point.mean,
                "accuracy_low": point.interval[0],
                "accuracy_high": point.interval[1],
                "repeats": len(point.accuracies),
            }
            for point in self.points
        ]

    def _display_plot(self, ax: Any) -> None:
        """Mean accuracy against labels per class (log scale), a band for each interval."""
        for line in [*self.lines, *self.baseline_lines]:
            points = [p for p in self.points if p.line == line]
            x = [self.per_class[str(p.size)] for p in points]
            drawn = ax.plot(x, [p.mean for p in points], marker="o", label=line)
            low, high = zip(*(p.interval for p in points), strict=True)
            ax.fill_between(x, low, high, alpha=0.15, color=drawn[0].get_color())
        ax.set_xscale("log")
        ax.set_xlabel("labels per class")
        ax.set_ylabel("accuracy")
        ax.legend(fontsize="small")

    def point(self, line: str, size: Size) -> Point:
        """The point of ``line`` at ``size``."""
        for point in self.points:
            if point.line == line and point.size == size:
                return point
        raise KeyError((line, size))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "sizes": self.sizes,
            "labels_per_class": self.per_class,
            "repeats": self.repeats,
            "lines": self.lines,
            "baseline_lines": self.baseline_lines,
            "points": [p.to_dict() for p in self.points],
            "transfer_gain": [g.to_dict() for g in self.gains],
            "worth_from": self.worth_from,
            "sentence": self.sentence,
            "evaluation": self.evaluation,
            "n_eval_rows": self.n_eval_rows,
            "majority_rate": self.majority_rate,
            "tuned": self.tuned,
            "seconds": self.seconds,
            "seconds_per_size": self.seconds_per_size,
            "notes": self.notes,
        }

    @classmethod
    def from_dict(cls, summary: dict[str, Any]) -> LearningCurve:
        """Rebuild a curve from :meth:`to_dict` (a ``learning_curve.json``)."""
        return cls(
            sizes=summary["sizes"],
            per_class=summary["labels_per_class"],
            repeats=summary["repeats"],
            lines=summary["lines"],
            baseline_lines=summary["baseline_lines"],
            points=[Point.from_dict(point) for point in summary["points"]],
            gains=[Gain.from_dict(gain) for gain in summary["transfer_gain"]],
            worth_from=summary["worth_from"],
            sentence=summary["sentence"],
            evaluation=summary["evaluation"],
            n_eval_rows=summary["n_eval_rows"],
            tuned=summary["tuned"],
            seconds=summary["seconds"],
            seconds_per_size=summary["seconds_per_size"],
            notes=summary["notes"],
            majority_rate=summary["majority_rate"],
        )


def _line(row: Row, baseline_heads: str) -> str:
    """A row's line: the head, ``HEAD@BASELINE``, or (winner on baselines) the baseline."""
    return row.features if row.is_baseline and baseline_heads == "winner" else row.name


def _draw_choice(comparison: Comparison) -> dict[str, Any]:
    """What one draw chose on its training rows, and the validation score it chose by."""
    choice = comparison.choices[0]
    out = {"head": choice.chosen, "validation": choice.score, "reason": choice.reason}
    if comparison.baseline_choices:
        chosen = comparison.baseline_choices[0]
        out |= {"baseline": chosen.chosen, "baseline_validation": chosen.score}
    return {"metric": comparison.metric, **out}


def _gain(size: Size, comparisons: list[Comparison], baseline_heads: str) -> Gain | None:
    transfers = [c.transfer for c in comparisons if c.transfer is not None]
    if not transfers:
        return None
    points = [t["gain_points"] for t in transfers]
    names = [_line(c.selected_baseline, baseline_heads) for c in comparisons]
    baseline = Counter(names).most_common(1)[0][0]
    if len(points) == 1:
        low, high = transfers[0]["interval_points"]
        verdict = transfers[0]["verdict"]
    else:
        differences = [
            _correct(c, c.selected) - _correct(c, c.selected_baseline) for c in comparisons
        ]
        low, high = (100 * v for v in repeat_interval(differences, (-1.0, 1.0)))
        verdict = "gain" if low > 0 else "negative" if high < 0 else "inconclusive"
    choices = [_draw_choice(c) for c in comparisons]
    return Gain(size, points, float(np.mean(points)), (low, high), baseline, verdict, choices)


def _points(size: Size, comparisons: list[Comparison], baseline_heads: str) -> list[Point]:
    """Each line's point at ``size``: every head and baseline row, the head chosen in each
    draw (:data:`CHOSEN`), and the baseline chosen in each draw where a draw has several."""
    by_line: dict[str, list[tuple[Comparison, Row]]] = {}
    for comparison in comparisons:
        for row in comparison.rows:
            by_line.setdefault(_line(row, baseline_heads), []).append((comparison, row))
        by_line.setdefault(CHOSEN, []).append((comparison, comparison.selected))
        if sum(row.is_baseline for row in comparison.rows) > 1:
            by_line.setdefault(CHOSEN_BASELINE, []).append(
                (comparison, comparison.selected_baseline)
            )
    points = []
    for line, found in by_line.items():
        baseline = found[0][1].is_baseline
        accuracies = [row.metrics["accuracy"] for _, row in found]
        if len(found) == 1:
            interval = found[0][1].intervals["accuracy"]
        else:
            interval = repeat_interval([_correct(c, row) for c, row in found], (0.0, 1.0))
        mean = float(np.mean(accuracies))
        points.append(Point(line, size, accuracies, mean, interval, baseline))
    return points


def size_label(size: Size) -> str:
    """``"5 per class"`` or ``"all"``."""
    return ALL if size == ALL else f"{size} per class"


def _sentence(gains: list[Gain], chosen: dict[Size, Point]) -> tuple[Size | None, str]:
    if not gains:
        first, last = chosen[next(iter(chosen))], chosen[list(chosen)[-1]]
        return None, (
            f"No baseline was given, so the curve cannot say whether transfer is worth it "
            f"(add --baseline random-base or raw-pixels). The head chosen on each draw's "
            f"training rows goes from {first.mean:.3f} ({size_label(first.size)}) to "
            f"{last.mean:.3f} ({size_label(last.size)})."
        )

    def text(gain: Gain) -> str:
        return (
            f"{gain.mean:+.1f} points vs {gain.baseline} at {size_label(gain.size)}, "
            f"95% CI {gain.interval[0]:+.1f} to {gain.interval[1]:+.1f}"
        )

    worth_from = None
    for gain in reversed(gains):
        if not gain.worth:
            break
        worth_from = gain.size
    negative = [g for g in gains if g.verdict == "negative"]
    hurt = ""
    if negative:
        where = ", ".join(size_label(g.size) for g in negative)
        hurt = f" Negative transfer: the baselines beat the transferred features at {where}."
    if worth_from is None:
        worth = [g for g in gains if g.worth]
        largest = max(gains, key=lambda g: g.mean)
        if worth:
            return None, (
                f"Transfer is worth it at {', '.join(size_label(g.size) for g in worth)} but "
                f"not at the largest size ({text(gains[-1])}).{hurt}"
            )
        return None, (
            f"Transfer is never worth it on these data: at no size does the head chosen on "
            f"the transferred features beat the chosen baseline significantly, so this base "
            f"does not help on this data (largest gain: {text(largest)}).{hurt}"
        )
    start = next(g for g in gains if g.size == worth_from)
    if start is gains[0]:
        return worth_from, (
            f"Transfer is worth it at every size tried, from the smallest ({text(start)}) to "
            f"the largest ({text(gains[-1])})."
        )
    below = gains[gains.index(start) - 1]
    return worth_from, (
        f"Transfer is worth it from {size_label(worth_from)} on ({text(start)}); below that "
        f"it is not ({text(below)}).{hurt}"
    )


def learning_curve(
    train: DataInput,
    test: DataInput | None = None,
    *,
    sizes: str | Sequence[int | str] = (5, 10, 50, 200, ALL),
    heads: Sequence[str] = DEFAULT_HEADS,
    baselines: Mapping[str, tuple[DataInput, DataInput | None]] | None = None,
    baseline_heads: str = "winner",
    repeats: int | None = None,
    tune: bool = False,
    full: Comparison | None = None,
    memo: FitMemo | None = None,
    n_bootstrap: int = 1000,
    random_state: int = 0,
    n_jobs: int | None = -1,
    metric: str | None = None,
) -> LearningCurve:
    """Accuracy of each head and baseline against the number of labels per class.

    Parameters
    ----------
    train : FeatureCache, path, LabeledData or arrays (X, y)
        The training cache; subsets are drawn from its rows.
    test : FeatureCache, path, LabeledData or arrays (X, y), optional
        The evaluation rows (default: a seeded stratified quarter of ``train``, held out).
    sizes : str or sequence
        Labels per class, and ``"all"``; e.g. ``"5,20,100,all"``.
    heads : sequence of str
        Head specs, as for :func:`~bottleneck_transfer.heads.compare.compare_heads`.
    baselines : mapping, optional
        ``name -> (train, test)`` baseline features of the same images (``test`` None
        without a test cache); subsets take the same rows of them.
    baseline_heads : {"winner", "all"}, default="winner"
        As for compare: the winning head on each baseline (one line per baseline), or every
        head (one line per head and baseline).
    repeats : int, optional
        Subsets per size (default: ``ceil(200 / n)`` between 3 and 10); ``all`` is one fit.
    tune : bool, default=False
        Tune each head on a validation split of each subset only.
    full : Comparison, optional
        A holdout comparison of the same heads and baselines on all training rows and the
        same test rows, reused as the ``all`` point.
    memo : FitMemo, optional
        Stores each subset's fits and predictions: a rerun of the same curve refits nothing.
    n_bootstrap : int, default=1000
        Bootstrap resamples for the single-fit ``all`` point.
    random_state : int, default=0
        Seeds the subsets, the holdout, the heads and the bootstrap.
    n_jobs : int or None, default=-1
        Parallel tuning trials.
    metric : str, optional
        Decides each draw's choice of head and baseline (and tuning), as for compare.

    Returns
    -------
    LearningCurve

    Examples
    --------
    >>> curve = learning_curve("train.h5", "test.h5", sizes="5,20,all")  # doctest: +SKIP
    >>> print(curve.sentence)  # doctest: +SKIP
    """
    start = time.perf_counter()
    wanted = parse_sizes(sizes)
    if repeats is not None and repeats < 1:
        raise HeadError(f"repeats must be >= 1. Received: repeats={repeats}")
    rows = _split(train, test, baselines or {}, random_state)
    settings = {
        "heads": heads,
        "tune": tune,
        "baseline_heads": baseline_heads,
        "random_state": random_state,
        "n_jobs": n_jobs,
        "memo": memo,
        "metric": metric,
    }
    draws = _Draws(rows, repeats, n_bootstrap, full, settings)
    plan, notes = _plan(wanted, rows.counts)
    return _curve([draws.at(size) for size in plan], rows, notes, tuned=tune, start=start)


@dataclass(frozen=True)
class _Sized:
    """One size's draws: mean labels per class, repeats, each line's point, the transfer
    gain (``None`` without baselines) and the seconds they took."""

    size: Size
    per_class: float
    repeats: int
    points: list[Point]
    gain: Gain | None
    seconds: float


def _curve(
    sized: list[_Sized], rows: _Rows, notes: list[str], *, tuned: bool, start: float
) -> LearningCurve:
    """The curve of every size's draws, its lines (heads first, then baselines) and the
    sentence on transfer."""
    points = [point for one in sized for point in one.points]
    gains = [one.gain for one in sized if one.gain is not None]
    baseline_lines = list(dict.fromkeys(p.line for p in points if p.baseline))
    main_lines = list(dict.fromkeys(p.line for p in points if not p.baseline))
    chosen = {one.size: next(p for p in one.points if p.line == CHOSEN) for one in sized}
    worth_from, sentence = _sentence(gains, chosen)
    return LearningCurve(
        sizes=[one.size for one in sized],
        per_class={str(one.size): one.per_class for one in sized},
        repeats={str(one.size): one.repeats for one in sized},
        lines=[*main_lines, *baseline_lines],
        baseline_lines=baseline_lines,
        points=points,
        gains=gains,
        worth_from=worth_from,
        sentence=sentence,
        evaluation=rows.described,
        n_eval_rows=len(rows.evaluation),
        tuned=tuned,
        seconds=round(time.perf_counter() - start, 3),
        seconds_per_size={str(one.size): one.seconds for one in sized},
        notes=notes,
        majority_rate=majority_rate(rows.evaluation.y),
    )


@dataclass
class _Rows:
    """Where subsets are drawn from (``pool``), what they are scored on, and the baselines'
    rows of both, in the same order."""

    pool: LabeledData
    evaluation: LabeledData
    baselines: dict[str, tuple[LabeledData, LabeledData]]
    described: str

    @functools.cached_property
    def counts(self) -> np.ndarray:
        """The pool's rows per class, views aside."""
        return np.bincount(self.pool.y[self.pool.plain], minlength=len(self.pool.class_names))

    def compare(self, rows: np.ndarray, n_bootstrap: int, settings: dict) -> Comparison:
        """Every head and baseline fitted on ``rows`` of the pool, scored on the evaluation."""
        baselines = {
            name: (pool.take(rows), evaluation)
            for name, (pool, evaluation) in self.baselines.items()
        }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", BottleneckWarning)  # small by design
            return compare_heads(
                self.pool.take(rows),
                self.evaluation,
                baselines=baselines or None,
                n_bootstrap=n_bootstrap,
                **settings,
            )


@dataclass(frozen=True)
class _Draws:
    """How each size is drawn and compared: the rows, the repeats asked for, the bootstrap
    resamples of a single fit, the comparison reused at ``all`` and compare's settings."""

    rows: _Rows
    repeats: int | None
    n_bootstrap: int
    full: Comparison | None
    settings: dict[str, Any]

    def __post_init__(self) -> None:
        full = self.full
        if full is not None and (
            full.mode != "holdout" or len(full.eval_labels) != len(self.rows.evaluation)
        ):
            raise HeadError("full= must be a holdout comparison on the same test rows")

    def at(self, size: Size) -> _Sized:
        """Every head and baseline compared on each subset of ``size``; the lines' points."""
        t0 = time.perf_counter()
        n_repeats = 1 if size == ALL else (self.repeats or default_repeats(size))
        comparisons = self._comparisons(size, n_repeats)
        counts = self.rows.counts
        per_class = float((counts if size == ALL else subset_counts(counts, size)).mean())
        baseline_heads = self.settings["baseline_heads"]
        points = _points(size, comparisons, baseline_heads)
        gain = _gain(size, comparisons, baseline_heads)
        return _Sized(size, per_class, n_repeats, points, gain, round(time.perf_counter() - t0, 3))

    def _comparisons(self, size: Size, n_repeats: int) -> list[Comparison]:
        """One comparison per subset of ``size`` (``full`` at ``all`` where given)."""
        if size == ALL and self.full is not None:
            return [self.full]
        n_boot = self.n_bootstrap if n_repeats == 1 else _REPEAT_BOOTSTRAP
        seed = self.settings["random_state"]
        return [
            self.rows.compare(_subset(self.rows.pool, size, seed, r), n_boot, self.settings)
            for r in range(n_repeats)
        ]


def _split(
    train: DataInput,
    test: DataInput | None,
    baselines: Mapping[str, tuple[DataInput, DataInput | None]],
    random_state: int,
) -> _Rows:
    """The pool and evaluation rows: ``test``, or a stratified quarter of ``train``."""
    train_data = as_data(train)
    check_labels(train_data.y, train_data.class_names, source=train_data.space.source)
    given = {
        name: (as_data(fit), None if evaluate is None else as_data(evaluate))
        for name, (fit, evaluate) in baselines.items()
    }
    for name, (fit, evaluate) in given.items():
        if len(fit) != len(train_data):
            raise HeadError(
                f"baseline {name!r} has {len(fit)} training rows; {train_data.space.source} has "
                f"{len(train_data)}: a baseline must hold the same images in the same order"
            )
        if test is not None and evaluate is None:
            raise HeadError(f"baseline {name!r} needs its test features with a test cache")
    if test is not None:
        evaluation = as_data(test)
        described = f"{len(evaluation)} rows of {evaluation.space.source}"
        return _Rows(train_data, evaluation, given, described)
    fit_rows, eval_rows = shuffle_split(
        train_data.y, train_data.groups, HOLDOUT_FRACTION, random_state, linked=train_data.linked
    )
    described = (
        f"{len(eval_rows)} rows of {train_data.space.source} held out (a stratified "
        f"{HOLDOUT_FRACTION:.0%}, seed {random_state})"
    )
    return _Rows(
        train_data.take(fit_rows),
        train_data.take(eval_rows),
        {name: (fit.take(fit_rows), fit.take(eval_rows)) for name, (fit, _) in given.items()},
        described,
    )


def _plan(wanted: list[Size], counts: np.ndarray) -> tuple[list[Size], list[str]]:
    """The sizes to run: one whose subset holds every row of every class is ``all``."""
    plan: list[Size] = []
    notes = []
    for size in wanted:
        if size != ALL and (subset_counts(counts, size) >= counts).all():
            notes.append(f"{size} per class is every training row: shown as 'all'")
            size = ALL
        if size not in plan:
            plan.append(size)
    return plan, notes


def _subset(data: LabeledData, size: Size, random_state: int, repeat: int) -> np.ndarray:
    """The rows of one subset: ``size`` images per class on average (the classes' ratio) with
    their views, seeded by (seed, repeat) so that a repeat's subsets are nested, or every
    row at ``all``."""
    if size == ALL:
        return np.arange(len(data))
    rng = np.random.default_rng([random_state, repeat])
    return stratified_subset(data.y, data.groups, int(size), rng, linked=data.linked)


def _cell(point: Point) -> str:
    return f"{point.mean:.3f} [{point.interval[0]:.3f}, {point.interval[1]:.3f}]"


def curve_rows(curve: LearningCurve) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the curve's table: one row per line, one column per size."""
    header = ["labels per class", *(str(s) for s in curve.sizes)]
    cells = []
    for line in curve.lines:
        cells.append([line, *(_cell(curve.point(line, size)) for size in curve.sizes)])
    if curve.gains:
        by_size = {g.size: g for g in curve.gains}
        cells.append(
            [
                "transfer gain (points)",
                *(
                    f"{by_size[s].mean:+.1f} [{by_size[s].interval[0]:+.1f}, "
                    f"{by_size[s].interval[1]:+.1f}]"
                    for s in curve.sizes
                ),
            ]
        )
    return header, cells


def _legend(curve: LearningCurve) -> str:
    repeats = ", ".join(f"{size}: {n}" for size, n in curve.repeats.items())
    return (
        f"Accuracy on {curve.evaluation}: mean over seeded stratified subsets of the training "
        f"rows (repeats {repeats}; n per class on average, in the training rows' class ratio; "
        "each repeat's subsets nested) with a 95% t-interval over the subsets widened by the "
        "evaluation rows' sampling variance; a single fit shows its 95% Clopper–Pearson "
        f"interval. '{CHOSEN}': in each draw the head chosen on a validation split of that "
        "draw's training rows only, scored on the evaluation rows (which no choice saw). "
        "Transfer gain: the chosen head minus the baseline chosen likewise, paired per subset "
        "and per row (the difference of those two lines), with the same widened interval (a "
        "single fit: the transfer test's)."
        + (" Heads tuned on each subset only." if curve.tuned else "")
        + f" Majority-class rate on the evaluation rows: {curve.majority_rate:.3f}."
    )


def choice_lines(curve: LearningCurve) -> list[str]:
    """One line per size: the head (and baseline) each draw chose, with its validation score."""

    def one(choice: dict[str, Any]) -> str:
        def scored(name: str, value: float | None) -> str:
            return name if value is None else f"{name} ({value:.3f})"

        text = scored(choice["head"], choice["validation"])
        if "baseline" in choice:
            text += " vs " + scored(choice["baseline"], choice["baseline_validation"])
        return text

    lines = []
    for gain in curve.gains:
        metric = gain.choices[0]["metric"] if gain.choices else "accuracy"
        draws = "; ".join(one(choice) for choice in gain.choices)
        lines.append(f"{size_label(gain.size)}: {draws} (validation {metric})")
    return lines


def format_curve(curve: LearningCurve) -> str:
    """The curve as a plain-text table, its legend and its sentence."""
    header, cells = curve_rows(curve)
    widths = [max(len(r[i]) for r in [header, *cells]) for i in range(len(header))]

    def line(values: list[str]) -> str:
        return "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()

    out = ["Learning curve", "", line(header), line(["-" * w for w in widths])]
    out += [line(row) for row in cells]
    out += ["", _legend(curve), *curve.notes, "", curve.sentence]
    return "\n".join(out)


def format_curve_markdown(curve: LearningCurve) -> str:
    """The curve as a Markdown report."""
    header, cells = curve_rows(curve)
    out = ["# Learning curve", "", "![learning curve](learning_curve.png)", ""]
    out += ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in cells]
    out += ["", _legend(curve), "", *[f"- {n}" for n in curve.notes], "", curve.sentence]
    choices = choice_lines(curve)
    if choices:
        out += ["", "## What each draw chose, on its training rows only", ""]
        out += [f"- {line}" for line in choices]
    return "\n".join(out) + "\n"


def plot_curve(curve: LearningCurve, path: str | Path) -> Path:
    """Write :func:`curve_figure` to ``path``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        curve_figure(curve).savefig(tmp, dpi=120)
    return path


def curve_figure(curve: LearningCurve) -> Figure:
    """Accuracy against labels per class (log x), one line per head and baseline, shaded CIs."""
    figure = new_figure(7.5, 4.8)
    axes = figure.add_subplot()
    x = np.asarray([curve.per_class[str(s)] for s in curve.sizes])
    for k, line in enumerate(curve.lines):
        points = [curve.point(line, size) for size in curve.sizes]
        means = np.asarray([p.mean for p in points])
        low = np.asarray([p.interval[0] for p in points])
        high = np.asarray([p.interval[1] for p in points])
        baseline = line in curve.baseline_lines
        colour = f"C{k}"
        label = f"baseline: {line}" if baseline else line
        axes.plot(x, means, "o--" if baseline else "o-", color=colour, label=label, lw=1.6)
        axes.fill_between(x, low, high, color=colour, alpha=0.15, lw=0)
    axes.set_xscale("log")
    labels = [f"all\n({x[i]:.0f})" if s == ALL else str(s) for i, s in enumerate(curve.sizes)]
    axes.set_xticks(x, labels)
    axes.minorticks_off()
    axes.set_xlabel("labelled images per class (log scale)")
    axes.set_ylabel("test accuracy (95% interval shaded)")
    axes.set_title("Learning curve: heads on transferred features vs baselines")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize="small")
    return figure


def write_curve_report(curve: LearningCurve, directory: str | Path) -> dict[str, Path]:
    """Write ``learning_curve.png``, ``.md`` and ``.json`` into ``directory``."""
    directory = Path(directory)
    paths = {name: directory / name for name in CURVE_FILES}
    plot_curve(curve, paths["learning_curve.png"])
    atomic_write_text(paths["learning_curve.md"], format_curve_markdown(curve))
    payload = {**curve.to_dict(), "files": {k: str(v) for k, v in paths.items()}}
    atomic_write_text(paths["learning_curve.json"], json.dumps(payload, indent=2))
    return paths
