"""Quiet by default, honest when it matters: the one place that decides what reaches stderr.

* The Keras backend's C++ start-up lines (CUDA probes, CPU feature notes) are muted: the
  log level is set before any TensorFlow import, and :func:`muted_backend_start` mutes
  file descriptor 2 while ``keras`` or ``tensorflow`` is first imported (and its first op
  runs), whoever imports it and whenever. Nothing imports either here: a command that
  fits a scikit-learn head never starts a backend.
* Python warnings raised while a command runs (scikit-learn's ``ConvergenceWarning``,
  NumPy's overflow notes, this package's own) are recorded by :func:`summarised_warnings`
  and printed once at the end, one line per kind and place, never as raw repeated lines.
  :func:`working_on` names the place (a head spec) for the warnings raised inside it;
  worker processes hand theirs back (:func:`run_recording`, :func:`replay`), so tuning
  trials and folds fitted in parallel are counted too.

The CLI uses all three unless ``--debug``, which leaves both streams raw.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib.util
import os
import sys
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from bottleneck_transfer.errors import BottleneckWarning

if TYPE_CHECKING:
    from importlib.machinery import ModuleSpec

#: TensorFlow's C++ log level: 2 keeps errors only.
LOG_LEVEL_VARIABLE = "TF_CPP_MIN_LOG_LEVEL"
_QUIET_LEVEL = "2"

_working_on: contextvars.ContextVar[str | None] = contextvars.ContextVar("working_on", default=None)
T = TypeVar("T")


def hide_backend_logs() -> None:
    """Set TensorFlow's C++ log level to errors only, unless the user chose a level."""
    os.environ.setdefault(LOG_LEVEL_VARIABLE, _QUIET_LEVEL)


def show_backend_logs() -> None:
    """Undo :func:`hide_backend_logs` (``--debug``), unless TensorFlow was already imported."""
    if "tensorflow" not in sys.modules and os.environ.get(LOG_LEVEL_VARIABLE) == _QUIET_LEVEL:
        del os.environ[LOG_LEVEL_VARIABLE]


@contextlib.contextmanager
def stderr_muted() -> Iterator[None]:
    """Send file descriptor 2 to the null device (C++ writes it directly, past Python)."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no descriptor 2 (a GUI process): nothing to mute
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _first_op(module: ModuleType) -> None:
    """One op, so the backend probes its devices (CUDA's ``cuInit``) while muted."""
    if module.__name__ == "keras":
        module.ops.convert_to_numpy(module.ops.zeros((1,)))
    else:
        module.zeros((1,)).numpy()


class _MutedLoader:
    """Runs another loader's module with stderr muted, then hands the module its loader."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def __getattr__(self, name: str) -> Any:  # is_package, get_resource_reader, ...
        return getattr(self._loader, name)

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        import logging

        logging.getLogger("absl").setLevel(logging.ERROR)
        # tf.function retracing notes (many small head fits in one process) are for developers.
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
        try:
            with stderr_muted():
                self._loader.exec_module(module)
                _first_op(module)
        finally:
            module.__loader__ = module.__spec__.loader = self._loader


class _MutedBackendFinder:
    """Finds ``keras`` and ``tensorflow`` as the other finders do, with a muting loader."""

    BACKENDS = ("keras", "tensorflow")

    def __init__(self) -> None:
        self._finding: set[str] = set()

    def find_spec(
        self, name: str, path: Any = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if name not in self.BACKENDS or name in self._finding:
            return None
        self._finding.add(name)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self._finding.discard(name)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _MutedLoader(spec.loader)
        return spec


def muted_backend_start() -> None:
    """Mute the backend's start-up lines whenever this process first imports it.

    Idempotent; imports nothing (a process that never runs a model never pays for it).
    """
    hide_backend_logs()
    if not any(isinstance(f, _MutedBackendFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _MutedBackendFinder())


@contextlib.contextmanager
def working_on(place: str | None) -> Iterator[None]:
    """Name the work (e.g. a head spec) that the warnings raised inside it are counted under."""
    token = _working_on.set(place)
    try:
        yield
    finally:
        _working_on.reset(token)


def working_place() -> str | None:
    """The place :func:`working_on` names here, if any."""
    return _working_on.get()


def named_by_first_argument(function: Callable[..., T]) -> Callable[..., T]:
    """Run ``function`` :func:`working_on` its first argument (a head spec)."""

    @functools.wraps(function)
    def named(place: Any, *args: Any, **kwargs: Any) -> T:
        with working_on(str(place)):
            return function(place, *args, **kwargs)

    return named


class Raised(NamedTuple):
    """One warning raised in a worker process, as :func:`replay` raises it again."""

    category: type[Warning]
    text: str
    filename: str
    lineno: int
    place: str | None


def run_recording(
    place: str | None, function: Callable[..., T], *args: Any
) -> tuple[T, list[Raised]]:
    """``function(*args)`` in a worker process, :func:`working_on` ``place`` (the calling
    process's), and every warning it raised, for :func:`replay` in the calling process.

    A worker's own stderr is no place for warnings: there they are neither counted by
    :func:`summarised_warnings` nor seen by the caller's filters.
    """
    raised: list[Raised] = []

    def record(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        *args: Any,
        **kwargs: Any,
    ) -> None:
        raised.append(Raised(category, str(message), filename, lineno, _working_on.get()))

    with warnings.catch_warnings(), working_on(place):
        warnings.simplefilter("always")
        warnings.showwarning = record
        result = function(*args)
    return result, raised


def replay(raised: list[Raised]) -> None:
    """Raise a worker's warnings (:func:`run_recording`) again here, each under its place:
    counted by :func:`summarised_warnings`, else shown as this process's filters say."""
    for warning in raised:
        with working_on(warning.place):
            warnings.warn_explicit(warning.text, warning.category, warning.filename, warning.lineno)


#: What to do about a kind of warning, by its category's name (the first line otherwise).
ADVICE = {
    "ConvergenceWarning": "raise the head's max_iter (e.g. logreg:max_iter=5000) or scale the "
    "features",
    "RuntimeWarning": "the features hold extreme or non-finite values; check the cache "
    "(bottleneck verify) or scale them",
}
_KINDS = {"ConvergenceWarning": "convergence", "RuntimeWarning": "numerical"}


class Caught(NamedTuple):
    """One recorded warning: its category's name, first line, and the work it came from."""

    category: str
    text: str
    place: str | None = None


def summary_lines(caught: list[Caught]) -> list[str]:
    """One line per kind of warning and place, in order of first appearance.

    Examples
    --------
    >>> caught = [Caught("ConvergenceWarning", "lbfgs failed", "logreg")] * 3
    >>> summary_lines(caught + [Caught("UserWarning", "few rows")])
    ["3 convergence warnings in logreg: raise the head's max_iter (e.g. logreg:max_iter=5000) \
or scale the features", 'Warning: few rows (UserWarning)']
    """
    counts = Counter((c.category, c.place) for c in caught)
    first = {}
    for c in caught:
        first.setdefault((c.category, c.place), c.text)
    lines = []
    for (category, place), n in counts.items():
        where = f" in {place}" if place else ""
        advice = ADVICE.get(category, first[(category, place)])
        if n == 1 and category not in ADVICE:
            lines.append(f"Warning{where}: {advice} ({category})")
        else:
            kind = _KINDS.get(category, category)
            lines.append(f"{n} {kind} warning{'s' if n > 1 else ''}{where}: {advice}")
    return lines


@contextlib.contextmanager
def summarised_warnings() -> Iterator[None]:
    """Record the warnings raised inside; print :func:`summary_lines` to stderr at a
    successful exit (a failed command ends with its one-line error alone).

    Every occurrence of a ``UserWarning`` (``ConvergenceWarning`` is one) or
    ``RuntimeWarning`` is counted; filters set inside (``ignore``) still apply.
    """
    caught: list[Caught] = []

    def record(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any):
        text = str(message).strip().splitlines()
        caught.append(Caught(category.__name__, text[0] if text else "", _working_on.get()))

    with warnings.catch_warnings():
        warnings.simplefilter("always", UserWarning)
        warnings.simplefilter("always", RuntimeWarning)
        warnings.showwarning = record
        succeeded = False
        try:
            yield
            succeeded = True
        except BaseException as exc:  # an exit with status 0 (click's Exit, SystemExit) is fine
            succeeded = getattr(exc, "exit_code", getattr(exc, "code", 1)) in (0, None)
            raise
        finally:
            if succeeded:  # a failed command's one-line error stands alone
                for line in summary_lines(caught):
                    print(line, file=sys.stderr)


@contextlib.contextmanager
def own_warnings_in_output() -> Iterator[None]:
    """Ignore this package's warnings raised inside: the result they concern shows them in
    its own output instead (a comparison's table, a trained head's metadata)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BottleneckWarning)
        yield
