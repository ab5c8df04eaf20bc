"""What ``bottleneck compare`` runs, by what it was asked: one request, four modes.

A cache with a binary, multi-label or regression target is compared against its own
baseline (:func:`~bottleneck_transfer.heads.target_compare.compare_targets`), refusing the
options of class targets. A class cache runs a layer sweep (``layer_caches``), a learning
curve (``curve_sizes``) or one comparison of heads, with the baselines given as caches
(``baseline_caches``) and those extracted by name (``baseline_names``). Each mode gives a
:class:`Compared`: its result, the text to print, how its report folder is written and the
accuracy that ``--assert-min-accuracy`` checks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bottleneck_transfer import quiet
from bottleneck_transfer.errors import HeadError
from bottleneck_transfer.features.cache.reader import target_kind_of
from bottleneck_transfer.heads.registry import default_heads, split_specs, without_calibration
from bottleneck_transfer.heads.training import check_min_accuracy

#: The options of ``compare`` that apply to class targets only, by request field.
_CLASS_ONLY = {
    "val_split": "--val-split",
    "baseline_caches": "--baseline-cache",
    "baseline_names": "--baseline",
    "curve_sizes": "--learning-curve",
    "layer_caches": "--layer-sweep",
    "assert_min_accuracy": "--assert-min-accuracy",
}


@dataclass(frozen=True)
class CompareRequest:
    """What ``bottleneck compare`` was asked, its options parsed (the command's help says
    what each means): ``baseline_caches`` as ``(name, train, test)``, ``layer_caches`` (the
    other layers) as ``(train, test)``, ``heads`` as given (comma-separated specs)."""

    train_cache: str
    test_cache: str | None
    cv: int | None
    val_split: float | None
    heads: str | None
    tune: bool
    metric: str | None
    cost_ratio: float | None
    calibrate: bool
    baseline_caches: tuple[tuple[str, str, str | None], ...]
    baseline_names: tuple[str, ...]
    base_path: str | None
    cache_dir: str | None
    baseline_heads: str
    curve_sizes: str | None
    repeats: int | None
    layer_caches: tuple[tuple[str, str | None], ...]
    bootstrap: int
    seed: int
    jobs: int
    memory_budget: str | None
    out_of_core: bool
    assert_min_accuracy: float | None
    progress: bool | None


@dataclass(frozen=True)
class Compared:
    """One mode's outcome: the result (with ``to_dict``), its text, the writer of its report
    folder, and the accuracy an accuracy floor checks (``None``: no floor applies) with what
    it is the accuracy of."""

    result: Any
    text: str
    write: Callable[[Any, str], dict]
    accuracy: float | None = None
    scored: str = ""

    def check(self, minimum: float | None) -> None:
        """Raise :class:`~bottleneck_transfer.errors.AccuracyBelowMinimumError` when the
        accuracy is below ``minimum``."""
        if self.accuracy is not None:
            check_min_accuracy(self.accuracy, minimum, what=self.scored)


def run_compare(request: CompareRequest) -> Compared:
    """Run the mode ``request`` asks for; its options are checked against each other first.

    Raises
    ------
    HeadError
        Options that do not go together, naming them and what to do.
    """
    if target_kind_of(request.train_cache) != "class":
        return _targets(request)
    if request.cost_ratio is not None:
        raise HeadError("--cost-ratio chooses thresholds of binary and multi-label targets")
    specs = split_specs(request.heads) if request.heads is not None else list(default_heads())
    if not request.calibrate:
        specs = [without_calibration(spec) for spec in specs]
    if request.layer_caches:
        return _layer_sweep(request, specs)
    if request.curve_sizes and request.cv is not None:
        raise HeadError(
            "--learning-curve scores on --test, or on a held-out quarter of TRAIN_CACHE "
            "without it; drop --cv"
        )
    baselines = _baselines(request)
    if request.curve_sizes:
        return _learning_curve(request, specs, baselines)
    return _heads(request, specs, baselines)


def _targets(request: CompareRequest) -> Compared:
    """A binary, multi-label or regression cache against its own baseline, in memory (its
    budget and ``--out-of-core`` refuse what would stream)."""
    from bottleneck_transfer.heads.target_compare import check_in_memory, compare_targets
    from bottleneck_transfer.heads.target_report import format_target_table, write_target_report

    heads = None if request.heads is None else split_specs(request.heads)
    refused = [option for field, option in _CLASS_ONLY.items() if getattr(request, field)]
    if refused:
        train = request.train_cache
        raise HeadError(
            f"{', '.join(refused)} apply to class targets only; {train} has a "
            f"{target_kind_of(train)} target, compared against its own baseline (the mean or "
            "prevalence predictor) without learning curves, layer sweeps or accuracy floors"
        )
    check_in_memory(request.train_cache, request.memory_budget, request.out_of_core)
    result = compare_targets(
        request.train_cache,
        request.test_cache,
        heads=heads,
        cv=request.cv,
        tune=request.tune,
        metric=request.metric,
        cost_ratio=request.cost_ratio,
        n_bootstrap=request.bootstrap,
        random_state=request.seed,
    )
    return Compared(result, format_target_table(result), write_target_report)


def _layer_sweep(request: CompareRequest, specs: list[str]) -> Compared:
    """The heads on TRAIN_CACHE's layer (and ``--test``'s) and on each other layer given."""
    from bottleneck_transfer.heads.layer_sweep import format_sweep, layer_sweep, write_sweep_report

    if request.curve_sizes or request.baseline_caches or request.baseline_names:
        raise HeadError(
            "--layer-sweep compares layers on their own: run --learning-curve or "
            "baselines in a separate compare"
        )
    with quiet.own_warnings_in_output():
        sweep = layer_sweep(
            [(request.train_cache, request.test_cache), *request.layer_caches],
            heads=specs,
            cv=request.cv,
            tune=request.tune,
            n_bootstrap=request.bootstrap,
            random_state=request.seed,
            n_jobs=request.jobs,
            metric=request.metric,
        )
    best = sweep.best.best.metrics["accuracy"]
    scored = f"the best layer {sweep.best.name} (on rows no choice saw)"
    return Compared(sweep, format_sweep(sweep), write_sweep_report, best, scored)


def _baselines(request: CompareRequest) -> dict[str, tuple[str, str | None]]:
    """The baselines' ``(train, test)`` caches by name: those given, then those extracted."""
    holdout = request.test_cache is not None
    baselines: dict[str, tuple[str, str | None]] = {}
    for name, train, test in request.baseline_caches:
        if name in baselines:
            raise HeadError(f"baseline {name!r} is given twice")
        if holdout and test is None:
            raise HeadError(
                f"baseline {name!r} needs its test cache too with --test: "
                f"--baseline-cache {name}=TRAIN.h5,TEST.h5"
            )
        baselines[name] = (train, test if holdout else None)
    if request.baseline_names:
        from bottleneck_transfer.features.baselines import extract_baselines

        baselines.update(
            extract_baselines(
                request.train_cache,
                request.test_cache,
                [n for n in dict.fromkeys(request.baseline_names) if n not in baselines],
                cache_dir=request.cache_dir,
                base_path=request.base_path,
                progress=request.progress,
            )
        )
    return baselines


def _learning_curve(
    request: CompareRequest, specs: list[str], baselines: dict[str, tuple[str, str | None]]
) -> Compared:
    """Every head and baseline at each number of labels per class."""
    from bottleneck_transfer.heads.learning_curve import (
        CHOSEN,
        format_curve,
        learning_curve,
        write_curve_report,
    )

    with quiet.own_warnings_in_output():
        curve = learning_curve(
            request.train_cache,
            request.test_cache,
            sizes=request.curve_sizes,
            heads=specs,
            baselines=baselines or None,
            baseline_heads=request.baseline_heads,
            repeats=request.repeats,
            tune=request.tune,
            n_bootstrap=request.bootstrap,
            random_state=request.seed,
            n_jobs=request.jobs,
            metric=request.metric,
        )
    last = curve.point(CHOSEN, curve.sizes[-1])
    scored = f"the head chosen on training rows at {last.size} labels per class"
    return Compared(curve, format_curve(curve), write_curve_report, last.mean, scored)


def _heads(
    request: CompareRequest, specs: list[str], baselines: dict[str, tuple[str, str | None]]
) -> Compared:
    """One comparison of the heads (and of the baselines) on TRAIN_CACHE."""
    from bottleneck_transfer.heads.budget import describe
    from bottleneck_transfer.heads.compare import compare_heads
    from bottleneck_transfer.heads.report import format_table, write_report

    with quiet.own_warnings_in_output():
        comparison = compare_heads(
            request.train_cache,
            request.test_cache,
            heads=specs,
            cv=request.cv,
            val_split=request.val_split,
            tune=request.tune,
            baselines=baselines,
            baseline_heads=request.baseline_heads,
            n_bootstrap=request.bootstrap,
            random_state=request.seed,
            n_jobs=request.jobs,
            progress=request.progress,
            metric=request.metric,
            memory_budget=request.memory_budget,
            out_of_core=request.out_of_core,
        )
    text = f"{format_table(comparison)}\n{describe(comparison.memory)}"
    selected = comparison.selected
    scored = f"{selected.name}, chosen on training rows (scored on rows no choice saw)"
    return Compared(comparison, text, write_report, selected.metrics["accuracy"], scored)
