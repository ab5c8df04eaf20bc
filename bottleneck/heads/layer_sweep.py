"""Layer sweeps: which layer of one base transfers best, compared on the same rows.

Each layer is a cache of the same images through the same base, cut at another layer (one
``bottleneck extract --layer NAME`` per layer, until several layers are stored in one pass).
Every layer's heads are compared by :func:`~bottleneck_transfer.heads.compare.compare_heads`
on the same splits (the same test rows, or the same seeded stratified folds, since the rows
and labels are checked equal), its head chosen on training rows stands for the layer, and
the best layer is chosen by that head's validation score (the declared metric, on a
validation split of each split's training rows only, :func:`~bottleneck_transfer.heads.
selection.choose`), never by its test score. Each layer's reported score is its chosen head's on
rows no choice saw (:attr:`Comparison.selected`), and the best layer is tested against each
other layer on the same rows (:func:`.stats.family_tests`: exact McNemar on a holdout, the
Nadeau–Bengio corrected t-test over CV folds), Holm-adjusted within the layers' own family,
so the sentence says whether its lead is real.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from bottleneck_transfer.atomic import atomic_write_text
from bottleneck_transfer.display import Display
from bottleneck_transfer.errors import HeadError
from bottleneck_transfer.features.cache import FeatureCache
from bottleneck_transfer.fingerprint import diff_keys
from bottleneck_transfer.heads.compare import (
    ALPHA,
    DEFAULT_HEADS,
    Comparison,
    Row,
    compare_heads,
    held_out_text,
)
from bottleneck_transfer.heads.declared import Metric, metric_named
from bottleneck_transfer.heads.selection import Choice, choose
from bottleneck_transfer.heads.stats import CV_INTERVALS, HOLDOUT_INTERVALS, family_tests
from bottleneck_transfer.heads.training import LabeledData

#: Base description keys that may differ between layers of one base (the cut changes the
#: feature size and which weights the truncated model holds).
LAYER_KEYS = ("layer", "pooling", "feature_dim", "weights_sha256")
SWEEP_FILES = ("layer_sweep.md", "layer_sweep.json")

CachePath = str | Path


@dataclass
class Layer:
    """One layer's comparison of heads; its winner stands for the layer."""

    name: str
    train: str
    dim: int
    comparison: Comparison
    test: dict[str, Any] | None = None
    validation: float | None = None

    @property
    def best(self) -> Row:
        """The layer's chosen head, scored on rows no choice saw."""
        return self.comparison.selected

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the layer's full comparison included)."""
        return {
            "layer": self.name,
            "train": self.train,
            "dim": self.dim,
            "best_head": self.best.name,
            "accuracy": self.best.metrics["accuracy"],
            "validation_score": self.validation,
            "vs_best_layer": self.test,
            "comparison": self.comparison.to_dict(),
        }


@dataclass(repr=False)
class LayerSweep(Display):
    """The result of :func:`layer_sweep`: layers ranked by their winner's accuracy."""

    layers: list[Layer]
    verdict: str
    mode: str
    seconds: float
    choices: list[Choice] = field(default_factory=list)

    _display_bar = ("layer", "accuracy")

    def _display_summary(self) -> dict[str, Any]:
        return {
            "best layer": self.best.name,
            "mode": self.mode,
            "verdict": self.verdict,
            "seconds": self.seconds,
        }

    def _display_rows(self) -> list[dict[str, Any]]:
        """One row per layer: its chosen head's accuracy (95% interval) on rows no choice
        saw, and the Holm-adjusted p against the best layer."""
        rows = []
        for layer in self.layers:
            low, high = layer.best.intervals.get("accuracy") or (None, None)
            rows.append(
                {
                    "layer": layer.name,
                    "dim": layer.dim,
                    "head": layer.best.name,
                    "accuracy": layer.best.metrics["accuracy"],
                    "accuracy_low": low,
                    "accuracy_high": high,
                    "validation": layer.validation,
                    "p_vs_best": None if layer.test is None else layer.test.get("p_holm"),
                }
            )
        return rows

    @property
    def best(self) -> Layer:
        """The layer that transfers best."""
        return self.layers[0]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "best_layer": self.best.name,
            "verdict": self.verdict,
            "mode": self.mode,
            "choices": [choice.to_dict() for choice in self.choices],
            "layers": [layer.to_dict() for layer in self.layers],
            "seconds": self.seconds,
        }


def _read(path: CachePath) -> tuple[dict, LabeledData]:
    with FeatureCache.open(path) as cache:
        return cache.identity, LabeledData.from_cache(cache)


def _check_same_images(
    first: tuple[CachePath, dict, LabeledData], other: tuple[CachePath, dict, LabeledData]
) -> None:
    """Refuse a cache of other images, or of another base (anything but the cut may differ)."""
    path, identity, data = other
    reference_path, reference, reference_data = first
    base = [
        key
        for key in diff_keys(reference.get("base", {}), identity.get("base", {}))
        if key.split(".")[0] not in LAYER_KEYS
    ]
    if base:
        raise HeadError(
            f"{path} comes from another base than {reference_path} (differs in: "
            f"{', '.join(base)}); a layer sweep compares layers of one base"
        )
    if reference.get("source") != identity.get("source") or data.ids != reference_data.ids:
        raise HeadError(
            f"{path} holds other images than {reference_path}; a layer sweep needs caches of "
            "the same source in the same order (extract it with the same source and --layer)"
        )


def _layer_names(identities: list[dict], paths: list[CachePath]) -> list[str]:
    """Each cache's layer (and pooling where layers repeat), else its file name."""
    bases = [identity.get("base", {}) for identity in identities]
    names = [str(base.get("layer", "penultimate")) for base in bases]
    if len(set(names)) < len(names):
        names = [f"{n} ({b.get('pooling')})" for n, b in zip(names, bases, strict=True)]
    if len(set(names)) < len(names):
        names = [Path(p).name for p in paths]
    return names


def layer_sweep(
    caches: Sequence[tuple[CachePath, CachePath | None]],
    *,
    heads: Sequence[str] = DEFAULT_HEADS,
    cv: int | None = None,
    tune: bool = False,
    n_bootstrap: int = 1000,
    random_state: int = 0,
    n_jobs: int | None = -1,
    metric: str | None = None,
) -> LayerSweep:
    """Compare heads on each layer's cache and say which layer transfers best.

    Parameters
    ----------
    caches : sequence of (train, test) paths
        One pair per layer, all of the same images through the same base; ``test`` is None
        in cross-validation mode (``cv``), and given for every layer otherwise.
    heads, cv, tune, n_bootstrap, random_state, n_jobs, metric
        As for :func:`~bottleneck_transfer.heads.compare.compare_heads`, the same for every
        layer (so the same splits).

    Returns
    -------
    LayerSweep

    Raises
    ------
    HeadError
        Fewer than two layers, caches of other images or another base, or a missing test.

    Examples
    --------
    >>> sweep = layer_sweep([("bottleneck.h5", "bottleneck-test.h5"),
    ...                      ("pool2.h5", "pool2-test.h5")])  # doctest: +SKIP
    >>> print(sweep.verdict)  # doctest: +SKIP
    """
    start = time.perf_counter()
    read = _read_layers(caches)
    layers = [
        Layer(
            one.name,
            str(one.path),
            one.data.space.dim,
            compare_heads(
                one.data,
                one.test,
                heads=heads,
                cv=cv,
                tune=tune,
                n_bootstrap=n_bootstrap,
                random_state=random_state,
                n_jobs=n_jobs,
                metric=metric,
            ),
        )
        for one in read
    ]
    deciding = metric_named(layers[0].comparison.metric)
    datas = {one.name: one.data for one in read}
    choices = _choose_per_split(layers, datas, deciding, tune, random_state, n_jobs)
    best = Counter(c.chosen for c in choices).most_common(1)[0][0]
    layers.sort(key=lambda layer: (layer.name != best, deciding.sort_key(layer.validation)))
    _test_against_best(layers)
    mode = layers[0].comparison.mode
    seconds = round(time.perf_counter() - start, 3)
    return LayerSweep(layers, _verdict(layers), mode, seconds, choices)


@dataclass
class _LayerCaches:
    """One layer's caches, read: its name, training cache and data, test data (None: CV)."""

    name: str
    path: CachePath
    data: LabeledData
    test: LabeledData | None


def _read_layers(caches: Sequence[tuple[CachePath, CachePath | None]]) -> list[_LayerCaches]:
    """Every layer's caches, read and checked: at least two layers, a test for all or none,
    the same images through one base."""
    if len(caches) < 2:
        raise HeadError(f"a layer sweep needs at least two layer caches. Received: {len(caches)}")
    holdout = caches[0][1] is not None
    if any((test is not None) != holdout for _, test in caches):
        raise HeadError(
            "give a test cache for every layer (TRAIN.h5,TEST.h5) or for none (cross-validation)"
        )
    read = [(train, *_read(train)) for train, _ in caches]
    tests = [(test, *_read(test)) for _, test in caches] if holdout else []
    for other in read[1:]:
        _check_same_images(read[0], other)
    for other in tests[1:]:
        _check_same_images(tests[0], other)
    names = _layer_names([identity for _, identity, _ in read], [p for p, _ in caches])
    return [
        _LayerCaches(name, path, data, tests[index][2] if holdout else None)
        for index, (name, (path, _, data)) in enumerate(zip(names, read, strict=True))
    ]


def _choose_per_split(
    layers: list[Layer],
    datas: dict[str, LabeledData],
    deciding: Metric,
    tune: bool,
    random_state: int,
    n_jobs: int | None,
) -> list[Choice]:
    """The best layer of each split, chosen among the layers' chosen heads on that split's
    training rows only; sets each layer's mean validation score (None if one is missing)."""
    choices = [
        choose(
            [
                (layer.name, layer.comparison.choices[k].chosen, datas[layer.name])
                for layer in layers
            ],
            fit_rows,
            deciding,
            tune=tune,
            random_state=random_state,
            n_jobs=n_jobs,
        )
        for k, (fit_rows, _) in enumerate(layers[0].comparison.splits)
    ]
    for layer in layers:
        scores = [c.scores[layer.name] for c in choices]
        layer.validation = None if None in scores else float(np.mean(scores))
    return choices


def _test_against_best(layers: list[Layer]) -> None:
    """Test the best layer (first) against each other on the same rows, Holm-adjusted
    within the layers' family; each other layer's ``test`` holds its result."""
    labels = layers[0].comparison.eval_labels
    first = layers[0].comparison
    correct = layers[0].best.predictions == labels
    pairs = [(correct, layer.best.predictions == labels) for layer in layers[1:]]
    results = family_tests(pairs, "layers vs best layer", first.eval_folds, first.test_fraction)
    for layer, result in zip(layers[1:], results, strict=True):
        layer.test = result


def _accuracy(layer: Layer) -> str:
    """The chosen head's accuracy on rows no choice saw, with its interval (holdout) or
    spread over folds (CV)."""
    return held_out_text(layer.best, "accuracy")


def _describe(layer: Layer) -> str:
    return f"{layer.name} ({layer.best.name}, accuracy {_accuracy(layer)})"


def _verdict(layers: list[Layer]) -> str:
    best, runner = layers[0], layers[1]
    lead = 100 * (best.best.metrics["accuracy"] - runner.best.metrics["accuracy"])
    metric = best.comparison.metric
    text = (
        f"Layer {_describe(best)} transfers best, chosen by its head's validation {metric} on "
        f"training rows only (the accuracies are on rows no choice saw; majority-class rate "
        f"{best.comparison.majority_rate:.3f}); it is {lead:+.1f} points vs {_describe(runner)}"
    )
    tied = [layer.name for layer in layers[1:] if layer.test["p_holm"] >= ALPHA]
    p, method = runner.test["p_holm"], runner.test["method"]
    if not tied:
        return f"{text}. The lead is real: {method} p = {p:.2g} (Holm-adjusted) vs every layer."
    verb = "is" if len(tied) == 1 else "are"
    return (
        f"{text}. The lead is NOT significant: {', '.join(tied)} {verb} statistically tied "
        f"with {best.name} ({method}, Holm-adjusted p = {p:.2g} vs {runner.name} ≥ {ALPHA})."
    )


def sweep_rows(sweep: LayerSweep) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the sweep table: one row per layer, best first."""
    header = ["#", "layer", "dim", "best head", "accuracy", "p vs best", "cache"]
    cells = []
    for rank, layer in enumerate(sweep.layers, start=1):
        p = "best" if layer.test is None else f"{layer.test['p_holm']:.2g}"
        cells.append(
            [
                str(rank),
                layer.name,
                str(layer.dim),
                layer.best.name,
                _accuracy(layer),
                p,
                layer.train,
            ]
        )
    return header, cells


def _legend(sweep: LayerSweep) -> str:
    if sweep.mode == "holdout":
        kind, test = HOLDOUT_INTERVALS, "exact McNemar test"
    else:
        kind, test = CV_INTERVALS, "Nadeau–Bengio corrected t-test over the folds"
    return (
        f"Accuracy of each layer's head chosen on training rows ({kind}), on rows no choice "
        f"saw; layers ranked by that head's validation {sweep.layers[0].comparison.metric}; "
        f"p: {test} vs the best layer's head on the same rows, Holm-adjusted over the layers "
        "only."
    )


def format_sweep(sweep: LayerSweep) -> str:
    """The sweep as a plain-text table with the verdict below it."""
    header, cells = sweep_rows(sweep)
    widths = [max(len(r[i]) for r in [header, *cells]) for i in range(len(header))]

    def line(values: list[str]) -> str:
        return "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()

    out = ["Layer sweep", "", line(header), line(["-" * w for w in widths])]
    out += [line(row) for row in cells]
    out += ["", _legend(sweep), "", sweep.verdict]
    return "\n".join(out)


def write_sweep_report(sweep: LayerSweep, directory: str | Path) -> dict[str, Path]:
    """Write ``layer_sweep.md`` and ``layer_sweep.json`` into ``directory``."""
    directory = Path(directory)
    paths = {name: directory / name for name in SWEEP_FILES}
    header, cells = sweep_rows(sweep)
    markdown = [
        "# Layer sweep",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
        *("| " + " | ".join(row) + " |" for row in cells),
        "",
        _legend(sweep),
        "",
        sweep.verdict,
    ]
    atomic_write_text(paths["layer_sweep.md"], "\n".join(markdown) + "\n")
    payload = {**sweep.to_dict(), "files": {k: str(v) for k, v in paths.items()}}
    atomic_write_text(paths["layer_sweep.json"], json.dumps(payload, indent=2))
    return paths
