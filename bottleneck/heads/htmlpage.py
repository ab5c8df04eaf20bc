"""One self-contained HTML page: escaped text, tables, and figures inlined as base64 PNG.

Built with the standard library (:func:`html.escape`) only. The page loads nothing: no
script, no web font, no stylesheet or image from elsewhere (figures are ``data:`` URIs), so
it opens offline and can be mailed as one file.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Sequence
from pathlib import Path

#: The page's only styling (system fonts, no network).
STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222;
       max-width: 72rem; margin: 2rem auto; padding: 0 1rem; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.25rem; margin-top: 2rem;
       border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.5rem; text-align: left;
         vertical-align: top; }
th { background: #f4f4f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.verdict { font-size: 1.05rem; background: #f6f8fa; border-left: 4px solid #e69500;
           padding: 0.6rem 1rem; }
.note { color: #555; font-size: 0.85rem; }
figure { margin: 1rem 0; } figure img { max-width: min(100%, 56rem); height: auto; }
figcaption { color: #555; font-size: 0.85rem; }
pre { background: #f6f8fa; padding: 0.5rem; overflow-x: auto; font-size: 0.8rem; }
"""


def text(value: object) -> str:
    """``value`` as escaped HTML text."""
    return html.escape(str(value))


def paragraph(value: object, css: str | None = None) -> str:
    """A ``<p>`` of escaped text, with an optional class."""
    kind = f' class="{css}"' if css else ""
    return f"<p{kind}>{text(value)}</p>"


def bullets(values: Iterable[object]) -> str:
    """A ``<ul>`` of escaped items (empty string when there are none)."""
    items = "".join(f"<li>{text(v)}</li>" for v in values)
    return f"<ul>{items}</ul>" if items else ""


def table(header: Sequence[object], rows: Iterable[Sequence[object]], numeric: set[int]) -> str:
    """A ``<table>``; the columns in ``numeric`` are right-aligned."""
    head = "".join(f"<th>{text(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{text(v)}</td>' if i in numeric else f"<td>{text(v)}</td>"
            for i, v in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def figure(png: bytes | Path, alt: str, caption: str = "") -> str:
    """A ``<figure>`` holding a PNG (bytes or file) as a ``data:`` URI."""
    data = Path(png).read_bytes() if isinstance(png, Path) else png
    uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    note = f"<figcaption>{text(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{uri}" alt="{text(alt)}">{note}</figure>'


def section(title: str, body: str, anchor: str) -> str:
    """A ``<section>`` with its ``<h2>`` title and an id to link to."""
    return f'<section id="{text(anchor)}"><h2>{text(title)}</h2>{body}</section>'


def page(title: str, body: Iterable[str]) -> str:
    """The whole document: ``<head>`` with the inline style, then ``body``'s parts."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{text(title)}</title><style>{STYLE}</style></head>"
        f"<body><h1>{text(title)}</h1>\n" + "\n".join(body) + "\n</body></html>\n"
    )
