"""Where every report figure starts: Matplotlib imported on the first figure drawn.

Commands that print a table (``evaluate``, ``compare`` without ``-o``) never import
Matplotlib; figures use its object-oriented API (no pyplot, no global state).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def new_figure(width: float, height: float) -> Figure:
    """An empty figure of ``width`` x ``height`` inches, constrained layout."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")
