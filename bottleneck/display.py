"""How a result object shows itself in a notebook: a short repr, an HTML table, a DataFrame, a plot.

A result class inherits :class:`Display` and says what matters through three hooks:

* ``_display_summary()``: the few facts that matter, ``{name: value}`` (the header);
* ``_display_rows()``: the table, one dict per row with the same keys; :meth:`Display.to_pandas`
  returns it as a DataFrame;
* ``_display_plot(ax)``: draws on a Matplotlib Axes; by default a bar per row of the column
  pair ``_display_bar`` (label, value), with ``<value>_low``/``<value>_high`` as error bars
  when the rows have them, or, without ``_display_bar``, the summary as text.

The repr is at most :data:`REPR_LIMIT` characters whatever the result's size (rows past it
are counted, not shown); pandas and Matplotlib are imported only by ``to_pandas`` and ``plot``.
Dataclasses that inherit it are declared with ``repr=False`` (a generated repr would replace it).
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from bottleneck_transfer.errors import MissingDependencyError

#: The longest repr a result object has, in characters.
REPR_LIMIT = 2000
#: Rows of the table the HTML repr shows (``to_pandas()`` has them all).
HTML_ROWS = 20
#: The widest cell of the text repr's table, and the longest value of its header.
CELL_WIDTH = 28
SUMMARY_WIDTH = 600


def cell(value: Any, width: int | None = None) -> str:
    """``value`` as short text: floats to 4 significant digits, pairs as ``[a, b]``, None empty."""
    if value is None:
        text = ""
    elif isinstance(value, bool):
        text = str(value)
    elif isinstance(value, float):
        text = f"{value:.4g}"
    elif isinstance(value, (tuple, list)) and all(isinstance(v, (int, float)) for v in value):
        text = "[" + ", ".join(cell(v) for v in value) + "]"
    else:
        text = str(value)
    text = " ".join(text.split())
    if width is not None and len(text) > width:
        text = text[: width - 1] + "…"
    return text


def _more(n: int) -> str:
    return f"{n} more row{'s' if n != 1 else ''} (to_pandas() has them all)"


def _columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    return list(dict.fromkeys(key for row in rows for key in row))


def text_repr(title: str, summary: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> str:
    """The plain-text repr: a title, ``name: value`` lines, then as many table rows as fit
    in :data:`REPR_LIMIT` characters, and how many more there are."""
    lines = [f"<{title}>"]
    lines += [
        f"  {name}: {cell(value, SUMMARY_WIDTH)}"
        for name, value in summary.items()
        if value is not None
    ]
    if rows:
        columns = _columns(rows)
        cells = [[cell(row.get(c), CELL_WIDTH) for c in columns] for row in rows]
        header = [cell(c, CELL_WIDTH) for c in columns]
        widths = [max(len(r[i]) for r in [header, *cells]) for i in range(len(columns))]

        def line(values: list[str]) -> str:
            return "  " + "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True))

        lines.append(line(header).rstrip())
        budget = REPR_LIMIT - len("\n".join(lines)) - 70  # room for the "more rows" line
        for shown, values in enumerate(cells):
            text = line(values).rstrip()
            if len(text) + 1 > budget:
                lines.append(f"  … {_more(len(cells) - shown)}")
                break
            budget -= len(text) + 1
            lines.append(text)
    text = "\n".join(lines)
    return text if len(text) <= REPR_LIMIT else text[: REPR_LIMIT - 1] + "…"


def html_repr(title: str, summary: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> str:
    """The HTML repr: the title, the summary as a two-column table, then the first
    :data:`HTML_ROWS` rows of the table."""
    escape = html.escape
    parts = [f"<div><strong>{escape(title)}</strong>", "<table>"]
    parts += [
        f"<tr><th style='text-align:left'>{escape(name)}</th>"
        f"<td style='text-align:left'>{escape(cell(value))}</td></tr>"
        for name, value in summary.items()
        if value is not None
    ]
    parts.append("</table>")
    if rows:
        columns = _columns(rows)
        parts.append("<table><thead><tr>")
        parts += [f"<th>{escape(c)}</th>" for c in columns]
        parts.append("</tr></thead><tbody>")
        for row in rows[:HTML_ROWS]:
            parts.append(
                "<tr>" + "".join(f"<td>{escape(cell(row.get(c)))}</td>" for c in columns) + "</tr>"
            )
        parts.append("</tbody></table>")
        if len(rows) > HTML_ROWS:
            parts.append(f"<p>… {escape(_more(len(rows) - HTML_ROWS))}</p>")
    parts.append("</div>")
    return "\n".join(parts)


def class_rows(labels: Sequence[int], class_names: Sequence[str], count: str) -> list[dict]:
    """One row per class, ``{"index", "class", count}``, then one for unlabeled (-1) rows."""
    tally = Counter(int(label) for label in labels)
    rows = [{"index": i, "class": name, count: tally[i]} for i, name in enumerate(class_names)]
    unlabeled = sum(n for label, n in tally.items() if label < 0)
    return rows + [{"index": -1, "class": "(unlabeled)", count: unlabeled}] * bool(unlabeled)


def frame(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> Any:
    """``rows`` as a ``pandas.DataFrame`` (pandas imported here, on use).

    Raises
    ------
    MissingDependencyError
        Without pandas, saying how to install it.
    """
    try:
        import pandas as pd
    except ImportError as exc:
        raise MissingDependencyError(
            "to_pandas() needs pandas, which is not installed: pip install "
            "'bottleneck-transfer[notebook]'"
        ) from exc

    return pd.DataFrame(list(rows), columns=list(columns or _columns(rows)) or None)


def axes(ax: Any = None) -> Any:
    """``ax``, or the Axes of a new Matplotlib figure (pyplot imported here, on use)."""
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=(6.4, 4.0), layout="constrained")
    return ax


def bars(ax: Any, rows: Sequence[Mapping[str, Any]], label: str, value: str) -> None:
    """One horizontal bar per row: ``row[value]`` named ``row[label]``, with the 95%
    interval ``row[value + "_low"]``..``row[value + "_high"]`` as error bars when given."""
    shown = [row for row in rows if row.get(value) is not None]
    names = [cell(row[label], CELL_WIDTH) for row in shown]
    values = [float(row[value]) for row in shown]
    low, high = f"{value}_low", f"{value}_high"
    errors = None
    if shown and all(row.get(low) is not None and row.get(high) is not None for row in shown):
        errors = [
            [v - float(row[low]) for v, row in zip(values, shown, strict=True)],
            [float(row[high]) - v for v, row in zip(values, shown, strict=True)],
        ]
    positions = range(len(shown))
    ax.barh(list(positions), values, xerr=errors, color="#4878a8", capsize=3)
    ax.set_yticks(list(positions), names)
    ax.invert_yaxis()  # first row on top
    ax.set_xlabel(value)


def summary_text(ax: Any, summary: Mapping[str, Any]) -> None:
    """Write ``summary`` as ``name: value`` lines on ``ax`` (for results without figures)."""
    lines = [f"{name}: {cell(value, 70)}" for name, value in summary.items() if value is not None]
    ax.text(0, 1, "\n".join(lines), va="top", ha="left", family="monospace", fontsize=8)
    ax.set_axis_off()


class Display:
    """Mixin: ``repr``, ``_repr_html_``, :meth:`to_pandas` and :meth:`plot` from the hooks
    ``_display_summary``, ``_display_rows`` and ``_display_plot`` (see the module)."""

    #: The (label, value) columns the default :meth:`_display_plot` draws as bars.
    _display_bar: tuple[str, str] | None = None

    def _display_summary(self) -> dict[str, Any]:
        raise NotImplementedError

    def _display_rows(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    def _display_plot(self, ax: Any) -> None:
        if self._display_bar is None:
            summary_text(ax, self._display_summary())
            return
        label, value = self._display_bar
        bars(ax, self._display_rows(), label, value)

    def __repr__(self) -> str:
        return text_repr(type(self).__name__, self._display_summary(), self._display_rows())

    def _repr_html_(self) -> str:
        return html_repr(type(self).__name__, self._display_summary(), self._display_rows())

    def to_pandas(self) -> Any:
        """The table of the repr, every row, as a ``pandas.DataFrame``."""
        return frame(self._display_rows())

    def plot(self, ax: Any = None) -> Any:
        """Draw the result on ``ax`` (default: a new figure); returns the Matplotlib Axes."""
        ax = axes(ax)
        ax.set_title(type(self).__name__)
        self._display_plot(ax)
        return ax
