"""Pipeline specs: TOML, validated against a schema that names the key and line of any error.

A spec is read within :mod:`~bottleneck_transfer.limits` before it is parsed: a regular file
of at most ``MAX_SPEC_BYTES``, text (a binary file is refused naming what it looks like),
nested at most ``MAX_SPEC_DEPTH`` deep.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from bottleneck_transfer import limits
from bottleneck_transfer.errors import BottleneckError, HeadError, did_you_mean
from bottleneck_transfer.features.bases.hub import spelled_path
from bottleneck_transfer.features.bases.preprocessing import SYNTAX, check_preprocess
from bottleneck_transfer.features.choices import (
    COMPRESSIONS,
    LAYOUTS,
    RUNTIME_CHOICES,
    STORE_DTYPES,
)
from bottleneck_transfer.features.targets import parse_target_spec
from bottleneck_transfer.heads.declared import ALL_METRIC_NAMES, METRIC_NAMES, target_metric
from bottleneck_transfer.heads.learning_curve import parse_sizes
from bottleneck_transfer.heads.registry import default_heads, head_kind, head_names, make_head

BASELINE_CHOICES = ("random-base", "raw-pixels")
#: ``[baselines] use`` also takes the text baseline (TF-IDF of the train texts).
USE_BASELINES = (*BASELINE_CHOICES, "tfidf")
#: What a binary file given as a spec looks like, by its first bytes.
_BINARY_KINDS = {
    b"\x89HDF\r\n\x1a\n": "an HDF5 file (a feature cache?)",
    b"PK\x03\x04": "a zip file (a .keras model or a .skops head?)",
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
}
#: TOML strings and comments, whose brackets are text (an unterminated one runs to its end).
_TOML_TEXT = re.compile(
    rb'"""(?:[^\\]|\\.)*?(?:"""|\\?\Z)|\'\'\'.*?(?:\'\'\'|\Z)'
    rb'|"(?:[^"\\\n]|\\[^\n])*+(?:"|\\?$)|\'[^\'\n]*+(?:\'|$)|#[^\n]*',
    re.DOTALL | re.MULTILINE,
)


class SpecError(BottleneckError):
    """A pipeline spec is malformed; the message names the file, line and key."""


@dataclass(frozen=True)
class Key:
    """One allowed key: its type(s), whether it is required, a check, its default, what it
    means (``doc``) and, for a default filled in later, how the README shows it (``shown``)."""

    types: tuple[type, ...]
    required: bool = False
    check: Callable[[Any], str | None] | None = None
    default: Any = None
    doc: str = ""
    shown: str | None = None


def _positive(value: Any) -> str | None:
    return None if value > 0 else "must be > 0"


def _choice(*choices: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        values = value if isinstance(value, list) else [value]
        bad = [v for v in values if _head_name(v) not in choices]
        return f"unknown value(s) {bad}; valid: {', '.join(choices)}" if bad else None

    return check


def _head_name(value: Any) -> str:
    return str(value).split(":", 1)[0]


def _list_of_str(value: Any) -> str | None:
    return None if all(isinstance(v, str) for v in value) else "must be a list of strings"


def _export_head(value: Any) -> str | None:
    if value == "best" or _head_name(value) in head_names(None):
        return None
    return f"must be 'best' or a head of heads.use ({', '.join(head_names(None))})"


def _heads(value: Any) -> str | None:
    """Head specs of registered kinds, with parameters their estimators accept (whether
    they fit the spec's target: :func:`_check_target`)."""
    problem = _list_of_str(value) or _choice(*head_names(None))(value)
    for head in [] if problem else value:
        try:
            make_head(head, target=head_kind(head).targets[0])
        except HeadError as exc:
            return str(exc).split(". Received", 1)[0]
    return problem


def _target(value: Any) -> str | None:
    try:
        parse_target_spec(value)
    except BottleneckError as exc:
        return str(exc).split(". Received", 1)[0].removeprefix("--target ")
    return None


def _preprocess(value: Any) -> str | None:
    try:
        check_preprocess(value)
    except BottleneckError as exc:
        return f"{str(exc).split('. Received', 1)[0]}; valid: {SYNTAX}"
    return None


def _batch_size(value: Any) -> str | None:
    if isinstance(value, str):
        return None if value == "auto" else 'must be a positive integer or "auto"'
    return _positive(value)


def _recipe(value: Any) -> str | None:
    from bottleneck_transfer.features.views import parse_recipe  # on use: it imports Keras

    try:
        parse_recipe(value)
    except BottleneckError as exc:
        return str(exc).split(". Received", 1)[0].removeprefix("--augment: ")
    return None


def _candidates(value: Any) -> str | None:
    from bottleneck_transfer.rank.candidates import parse_candidate

    if not value:
        return "must list at least one base"
    try:
        for candidate in value:
            parse_candidate(candidate)
    except (BottleneckError, AttributeError) as exc:
        return f"each candidate is a string BASE [key=value ...] or a table: {exc}"
    return None


def _sample(value: Any) -> str | None:
    from bottleneck_transfer.rank.sample import SampleSize

    try:
        SampleSize.parse(value)
    except BottleneckError:
        return 'must be "N/class" or a number of images N >= 1'
    return None


def _source_kind(value: Any) -> str | None:
    from bottleneck_transfer.features.sources.registry import SOURCE_KINDS

    return None if value in SOURCE_KINDS else f"valid: {', '.join(SOURCE_KINDS)}"


def _curve_sizes(value: Any) -> str | None:
    try:
        parse_sizes(value)
    except HeadError as exc:
        return str(exc).split(". Received", 1)[0]
    return None


SCHEMA: dict[str, dict[str, Key]] = {
    "data": {
        "train": Key(
            (str,),
            required=True,
            doc="Training images: class folders, a CSV manifest, IDX/NPZ, .tar shards, a "
            "Parquet/Arrow table or fashion-mnist:train (relative to the spec), or an fsspec "
            "URL (s3://, gs://, http://).",
        ),
        "test": Key((str,), doc="Held-out images the heads are scored on."),
        "val": Key((str,), doc="Validation images, extracted through the base."),
        "source": Key(
            (str,),
            check=_source_kind,
            doc="The sources' kind (folder, csv, webdataset, table, npz, idx, fashion-mnist, "
            "text) instead of detecting it from each path.",
        ),
        "image_column": Key((str,), doc="A table's column of image bytes (default: image)."),
        "label_column": Key(
            (str,), doc="A table's column of labels, indices or names (default: label)."
        ),
        "text_column": Key(
            (str,), doc="A text table's column of texts (default: text; makes it a text source)."
        ),
        "classes": Key((str, list), doc='Class subset: names, indices or ranges ("5-9").'),
        "limit": Key((int,), check=_positive, doc="Use N training images spread over train."),
        "test_limit": Key((int,), check=_positive, doc="Use N test (and val) images."),
        "target": Key(
            (str,),
            check=_target,
            doc="A CSV or JSON-lines manifest's target, as `extract --target`: binary, "
            "multilabel, regression (or class), with :column=NAME,positive=VALUE,unit=TEXT,"
            "empty=true; unset: inferred from the label column.",
        ),
        "val_split": Key(
            (float,),
            check=lambda v: None if 0 < v < 1 else "must be in (0, 1)",
            doc="One labelled folder: hold out this stratified share of train as the test set.",
        ),
    },
    "base": {
        "name": Key(
            (str,),
            doc="Required unless [rank] lists candidates (then the other base keys are their "
            "shared settings). A keras.applications name, a .keras/.h5 file, a KerasHub preset "
            "or a SavedModel folder.",
        ),
        "weights": Key((str,), doc="imagenet (the default for names), none, or a file."),
        "image_size": Key((int,), check=_positive, doc="Input size (default: the base's)."),
        "pooling": Key(
            (str,),
            check=_choice("avg", "max", "token", "cls", "pooled", "mean", "last-token"),
            doc="Images (default avg): avg or max over positions or tokens; token: a "
            "transformer's class token. Text bases (default: the family's): cls, pooled, mean, "
            "last-token.",
        ),
        "max_length": Key(
            (int,), check=_positive, doc="Text bases: tokens per text (longer: truncated)."
        ),
        "layer": Key((str,), doc="Cut at this layer (default: the penultimate one)."),
        "preprocess": Key(
            (str,),
            check=_preprocess,
            doc="Override the base's preprocessing: none, unit, tf, torch, caffe or mean=M,std=S.",
        ),
        "trust_graph": Key(
            (bool,),
            default=False,
            doc="Run a SavedModel or ONNX base whose graph holds ops off the allow-list.",
        ),
        "layout": Key(
            (str,),
            check=_choice(*LAYOUTS),
            doc="An .onnx base's input layout, nchw or nhwc (default: its metadata's, else "
            "read from its input shape).",
        ),
    },
    "extract": {
        "batch_size": Key(
            (int, str),
            check=_batch_size,
            default="auto",
            doc='Images per model call; "auto" sizes it for the device and input size.',
        ),
        "strict": Key((bool,), default=False, doc="Fail at the first bad image."),
        "workers": Key(
            (int,),
            check=_positive,
            doc="Decoding threads (default: cores); with engine dask and no scheduler, "
            "local worker processes.",
        ),
        "engine": Key(
            (str,),
            check=_choice("local", "dask"),
            default="local",
            doc="dask: shards as tasks on a Dask cluster.",
        ),
        "scheduler": Key((str,), doc="A running Dask scheduler (tcp://host:8786)."),
        "runtime": Key(
            (str,),
            check=_choice(*RUNTIME_CHOICES),
            doc="How the base runs: keras (unset: keras; onnx for an .onnx base); onnx (ONNX "
            "Runtime, parity checked); auto (the faster here, probed once). Baselines run on "
            "keras.",
        ),
        "shard_images": Key((int,), check=_positive, doc="Images per shard with engine dask."),
        "store_dtype": Key(
            (str,),
            check=_choice(*STORE_DTYPES),
            default="float32",
            doc="float16 halves the caches (part of their fingerprints).",
        ),
        "compression": Key(
            (str,), check=_choice(*COMPRESSIONS), doc="Lossless HDF5 compression of features."
        ),
        "augment": Key(
            (str,),
            check=_recipe,
            doc='Augmented views of every training cache (never a test cache): "flip,crop,'
            'rotate,color".',
        ),
        "views": Key(
            (int,),
            check=lambda v: None if v >= 0 else "must be >= 0",
            default=0,
            doc="Augmented views per image (with augment).",
        ),
        "seed": Key((int,), default=0, doc="Seeds augment and random weights."),
    },
    "heads": {
        "use": Key(
            (list,),
            check=_heads,
            shown=repr(list(default_heads())).replace("'", '"'),
            doc='Head specs to compare, e.g. "logreg:C=0.1" (default: the registry\'s default '
            "heads).",
        ),
        "tune": Key((bool,), default=False, doc="Tune each head on a validation split of train."),
        "cv": Key(
            (int,),
            check=lambda v: None if v >= 2 else "must be >= 2",
            doc="K-fold cross-validation on train instead of a test set.",
        ),
        "metric": Key(
            (str,),
            check=_choice(*ALL_METRIC_NAMES),
            doc="The metric that decides tuning, the winner and the verdict (as --metric); "
            "unset: accuracy, or balanced-accuracy when classes are unequal (binary: roc-auc, "
            "multi-label: map, regression: r2).",
        ),
        "learning_curve": Key(
            (list,),
            check=_curve_sizes,
            doc='Labels per class, e.g. [5, 20, 100, "all"]: a learning curve too.',
        ),
    },
    "baselines": {
        "use": Key(
            (list,),
            check=lambda v: _list_of_str(v) or _choice(*USE_BASELINES)(v),
            doc="Baselines of the same images: random-base, raw-pixels; of the same texts: "
            "random-base, tfidf (TF-IDF of the train texts).",
        ),
    },
    # Rank candidate bases on a sample of train first; the winner is the run's base.
    # candidates = ["a.keras", "mobilenet_v2 weights=none image_size=96",
    #               {name = "b.keras", layer = "bottleneck"}]
    "rank": {
        "candidates": Key(
            (list,),
            check=_candidates,
            doc="Candidate bases: names, files or tables with their own base keys.",
        ),
        "sample": Key(
            (str, int),
            check=_sample,
            default="50/class",
            doc='The stratified, seeded sample each candidate extracts: "N/class" or a total.',
        ),
        "cv": Key(
            (int,),
            check=lambda v: None if v >= 2 else "must be >= 2",
            default=5,
            doc="Folds of the sample's linear probe.",
        ),
        "baselines": Key(
            (list,),
            check=lambda v: _list_of_str(v) or _choice(*BASELINE_CHOICES)(v),
            default=list(BASELINE_CHOICES),
            doc="Baselines ranked beside the candidates: random-base, raw-pixels.",
        ),
    },
    "export": {
        "head": Key(
            (str,),
            check=_export_head,
            default="best",
            doc="best (the comparison's choice) or a kind or spec of heads.use.",
        ),
        "predict": Key(
            (int,),
            check=lambda v: None if v >= 0 else "must be >= 0",
            default=8,
            doc="Predict N test images (texts) with the export (0: none).",
        ),
    },
    "outputs": {
        "dir": Key((str,), default="runs", doc="Where each run's folder goes."),
        "cache_dir": Key(
            (str,),
            doc="The store (default: --cache-dir, $BOTTLENECK_CACHE_DIR, else caches/ beside "
            "the spec).",
        ),
    },
}


def spec_reference() -> str:
    """Every spec key with its type, default and meaning, as the README's Markdown table."""
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for section, keys in SCHEMA.items():
        for name, key in keys.items():
            if key.shown is not None:
                default = f"`{key.shown}`"
            elif key.required:
                default = "required"
            elif key.default is None:
                default = "unset"
            else:
                default = f"`{_toml(key.default)}`"
            kinds = " or ".join(t.__name__ for t in key.types)
            lines.append(f"| `{section}.{name}` | {kinds} | {default} | {key.doc} |")
    return "\n".join(lines)


def _toml(value: Any) -> str:
    """``value`` as TOML writes it (strings quoted, booleans lower case)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    return f'"{value}"' if isinstance(value, str) else str(value)


_PATH_KEYS = {("data", "train"), ("data", "test"), ("data", "val"), ("outputs", "dir")}


def _line_of(text: str, section: str, key: str | None = None) -> int | None:
    """1-based line of ``[section]`` or of ``key`` inside it, for error messages."""
    lines = text.splitlines()
    start = next(
        (
            i
            for i, line in enumerate(lines)
            if re.match(rf"\s*\[\s*{re.escape(section)}\s*\]", line)
        ),
        None,
    )
    if start is None or key is None:
        return None if start is None else start + 1
    for i in range(start + 1, len(lines)):
        if re.match(r"\s*\[", lines[i]):
            break
        if re.match(rf"\s*{re.escape(key)}\s*=", lines[i]):
            return i + 1
    return start + 1


def _looks_like_path(value: str) -> bool:
    return not re.match(r"^[a-z][a-z0-9-]*:(?!//)", value) or len(value.split(":", 1)[0]) == 1


def _resolve(value: str, folder: Path) -> str:
    """Resolve a relative file path against the spec's folder; leave ``scheme:`` specs alone."""
    if not _looks_like_path(value):
        return value
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (folder / path).resolve())


def _base_path(name: str, folder: Path, fail: Callable[[str], SpecError]) -> str:
    """A base given as a path resolved against the spec's folder (it must exist); a
    registered name as it is."""
    if spelled_path(name) is None:
        return name
    resolved = _resolve(name, folder)
    if not Path(resolved).exists():
        raise fail(f"model file not found: {resolved}")
    return resolved


def _read_text(path: Path) -> str:
    """The spec's text, within the size and depth limits; binary files refused by name."""
    todo = "a pipeline spec is a small TOML file (see pipelines/ for examples)"
    limits.regular_file_size(path, "MAX_SPEC_BYTES", SpecError, "a pipeline spec (.toml)", todo)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SpecError(f"cannot read pipeline spec {path}: {exc.strerror or exc}") from exc
    kind = next((kind for magic, kind in _BINARY_KINDS.items() if data.startswith(magic)), None)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        kind = kind or "not UTF-8 text"
    if kind or "\x00" in text:
        raise SpecError(
            f"{path} is a binary file ({kind or 'it holds NUL bytes'}), not a TOML pipeline "
            "spec: give the spec's .toml file"
        )
    structure = np.frombuffer(re.sub(rb"[^\[\]{}]", b"", _TOML_TEXT.sub(b"", data)), np.uint8)
    depth = limits.nesting(structure)
    deepest = int(depth.max()) if depth.size else 0
    if deepest > limits.MAX_SPEC_DEPTH:
        problem = limits.over("arrays or tables nested", deepest, "MAX_SPEC_DEPTH", " deep")
        raise SpecError(f"{path}: {problem}; {todo}")
    return text


def load_spec(path: str | Path) -> dict[str, dict[str, Any]]:
    """Read and validate a pipeline spec; fill defaults; resolve relative paths.

    Raises
    ------
    SpecError
        Naming ``file:line``, the key (``section.key``) and what is wrong.
    """
    path = Path(path)
    where = _Where(path, _read_text(path))
    try:
        raw = tomllib.loads(where.text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}") from exc
    fail = where.fail
    spec = _filled(raw, fail)
    folder = path.resolve().parent
    for section, key in _PATH_KEYS:
        if spec[section][key] is not None:
            spec[section][key] = _resolve(spec[section][key], folder)
    _resolve_bases(spec, folder, fail)
    for key in ("train", "test", "val"):
        value = spec["data"][key]
        if value is not None and _looks_like_path(value) and not Path(value).exists():
            raise fail("data", key, f"source not found: {value}")
    if spec["outputs"]["cache_dir"] is not None:
        spec["outputs"]["cache_dir"] = _resolve(spec["outputs"]["cache_dir"], folder)
    if spec["extract"]["batch_size"] == "auto":
        spec["extract"]["batch_size"] = None  # extract() sizes batches for the device
    _check_evaluation(spec, fail)
    if spec["extract"]["views"] and spec["extract"]["augment"] is None:
        raise fail(
            "extract",
            "views",
            "needs extract.augment, the recipe that makes the views (e.g. "
            f'"flip,crop,rotate,color"). Received: views={spec["extract"]["views"]}',
        )
    _check_target(spec, fail)
    _check_export_head(spec, fail)
    return spec


@dataclass(frozen=True)
class _Where:
    """A spec's file and text: where its errors point."""

    path: Path
    text: str

    def fail(self, section: str, key: str | None, message: str) -> SpecError:
        """The error for ``section.key`` (or ``[section]``), naming ``file:line``."""
        line = _line_of(self.text, section, key)
        where = f"{self.path}:{line}" if line else str(self.path)
        name = f"{section}.{key}" if key else f"[{section}]"
        return SpecError(f"{where}: {name}: {message}")


#: How a spec's errors are made: ``fail(section, key, message)`` (:meth:`_Where.fail`).
_Fail = Callable[[str, str | None, str], SpecError]


def _filled(raw: dict[str, Any], fail: _Fail) -> dict[str, dict[str, Any]]:
    """Every section of :data:`SCHEMA` with its keys checked and defaults filled in; an
    unknown section or key, or one that is not a table, is refused."""
    for section, value in raw.items():
        if section not in SCHEMA:
            raise fail(
                section,
                None,
                f"unknown section.{did_you_mean(section, list(SCHEMA))} Valid: {', '.join(SCHEMA)}",
            )
        if not isinstance(value, dict):
            raise fail(section, None, "must be a table ([section])")
    spec: dict[str, dict[str, Any]] = {}
    for section, keys in SCHEMA.items():
        given = raw.get(section, {})
        for key in given:
            if key not in keys:
                raise fail(
                    section,
                    key,
                    f"unknown key.{did_you_mean(key, list(keys))} Valid keys: {', '.join(keys)}",
                )
        spec[section] = {key: _value(section, key, rule, given, fail) for key, rule in keys.items()}
    return spec


def _value(section: str, key: str, rule: Key, given: dict[str, Any], fail: _Fail) -> Any:
    """``key``'s value in ``given`` (a section of the spec) once ``rule`` checks it, or its
    default."""
    if key not in given:
        if rule.required:
            raise fail(section, None, f"missing required key {key!r}")
        return rule.default
    value = given[key]
    if not isinstance(value, rule.types) or (isinstance(value, bool) and bool not in rule.types):
        wanted = " or ".join(t.__name__ for t in rule.types)
        raise fail(section, key, f"must be {wanted}; got {value!r}")
    problem = rule.check(value) if rule.check else None
    if problem:
        raise fail(section, key, f"{problem}. Received: {key}={value!r}")
    return value


def _resolve_bases(spec: dict, folder: Path, fail: _Fail) -> None:
    """Check that the spec names a base or ``[rank] candidates``, not both, and resolve
    either's paths against the spec's ``folder``."""
    name = spec["base"]["name"]
    if name is None and spec["rank"]["candidates"] is None:
        raise fail(
            "base",
            None,
            "missing required key 'name' (or list [rank] candidates: the winner is the base)",
        )
    if name is not None and spec["rank"]["candidates"] is not None:
        raise fail(
            "base",
            "name",
            "give the base's name or [rank] candidates (the winner is the "
            "base), not both; [base] may still hold settings every candidate shares",
        )
    if name is not None:
        spec["base"]["name"] = _base_path(name, folder, lambda m: fail("base", "name", m))
    candidates = spec["rank"]["candidates"] or []

    def at(message: str) -> SpecError:
        return fail("rank", "candidates", message)

    for k, candidate in enumerate(candidates):
        if isinstance(candidate, str):
            word, *rest = candidate.split()
            candidates[k] = " ".join([_base_path(word, folder, at), *rest])
        else:
            candidates[k] = {**candidate, "name": _base_path(candidate["name"], folder, at)}


def _check_evaluation(spec: dict, fail: _Fail) -> None:
    """Check that the spec says what the heads are scored on: ``data.test``,
    ``data.val_split`` (not both) or ``heads.cv``."""
    if spec["data"]["val_split"] is not None and spec["data"]["test"] is not None:
        raise fail(
            "data",
            "val_split",
            "holds out part of train as the test set; give it or data.test, not both",
        )
    if all(
        spec[s][k] is None for s, k in (("data", "test"), ("data", "val_split"), ("heads", "cv"))
    ):
        raise fail(
            "data",
            None,
            "give a 'test' source or set heads.cv for cross-validation (or hold out a share "
            "of train with val_split)",
        )


def _check_export_head(spec: dict, fail: _Fail) -> None:
    """Check that ``export.head`` is ``best`` or one of ``heads.use``."""
    use = spec["heads"]["use"]
    choice = spec["export"]["head"]
    if choice != "best" and not any(choice in (head, _head_name(head)) for head in use):
        raise fail(
            "export",
            "head",
            f"{choice!r} is not one of heads.use ({', '.join(use)}): export 'best' or a head "
            f"the run compares. Received: head={choice!r}",
        )


#: The keys a binary, multi-label or regression target does not take, and why.
_CLASS_ONLY = {
    ("heads", "learning_curve"): "a learning curve subsamples labels per class",
    ("baselines", "use"): "the target's own baseline is the mean or prevalence predictor",
    ("rank", "candidates"): "ranking probes bases with a class head",
    ("extract", "augment"): "augmented views are compared by the class comparison only",
}


def _check_target(spec: dict, fail: _Fail) -> None:
    """Fill ``heads.use`` (the target kind's default heads) and check that every head and
    ``heads.metric`` fit the target, and that no key of :data:`_CLASS_ONLY` is set for a
    binary, multi-label or regression target."""
    text = spec["data"]["target"]
    kind = (parse_target_spec(text).kind if text else None) or "class"
    if spec["heads"]["use"] is None:
        spec["heads"]["use"] = list(default_heads(kind))
    for head in spec["heads"]["use"]:
        try:
            make_head(head, target=kind)
        except HeadError as exc:
            raise fail("heads", "use", str(exc).split(". Received", 1)[0]) from exc
    metric = spec["heads"]["metric"]
    if kind == "class":
        if metric is not None and metric not in METRIC_NAMES:
            raise fail(
                "heads",
                "metric",
                f"{metric!r} is not a metric of class targets; valid: {', '.join(METRIC_NAMES)}",
            )
        return
    if metric is not None:
        try:
            target_metric(kind, metric)
        except ValueError as exc:
            raise fail("heads", "metric", str(exc).removeprefix("--metric ")) from exc
    choice = spec["export"]["head"]
    if choice != "best" and head_kind(choice).export_form != "keras":
        raise fail(
            "export",
            "head",
            f"{head_kind(choice).name} has no exact Keras form for a {kind} target, so it "
            "does not export: name a head of heads.use that does (or 'best')",
        )
    for (section, key), why in _CLASS_ONLY.items():
        if spec[section][key]:
            raise fail(
                section,
                key,
                f"applies to class targets only ({why}); data.target is {kind}: leave it out",
            )
