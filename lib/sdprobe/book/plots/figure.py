"""The book's figure: a pyplot-free matplotlib Figure that carries its own PNG, the column width, titles that fit, plain log ticks."""

from __future__ import annotations

import io
import textwrap
from typing import Any

from matplotlib.figure import Figure

PNG_DPI = 100

#: Widest figure, in inches at ``PNG_DPI``: the book's text column (about 690 px in a 1280-px
#: window). A wider figure would be scaled down by the browser, and its 9-pt labels with it.
MAX_WIDTH = 6.8


class BookFigure(Figure):
    """A ``Figure`` that Jupyter shows as a PNG when it is a cell's value."""

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        # Fixed metadata: the same figure gives the same bytes on every run.
        self.savefig(buffer, format="png", dpi=PNG_DPI, metadata={"Software": None})
        return buffer.getvalue()


def new_figure(**kwargs: Any) -> BookFigure:
    """A pyplot-free figure that displays itself in notebooks (``kwargs`` go to ``Figure``).

    A ``figsize`` wider than :data:`~sdprobe.book.plots.figure.MAX_WIDTH` is scaled down, aspect kept, so that the page
    never shrinks the figure's text below the size it was set in.
    """
    if "figsize" in kwargs and kwargs["figsize"][0] > MAX_WIDTH:
        w, h = kwargs["figsize"]
        kwargs["figsize"] = (MAX_WIDTH, h * MAX_WIDTH / w)
    return BookFigure(**kwargs)


def _caption(title: str | None, label: str) -> str:
    return f"{title}\n{label}" if title else label


def fit_title(text: str, inches: float, *, chars_per_inch: float = 14, max_lines: int = 3) -> str:
    """Wrap each line of ``text`` to the width of ``inches`` so that neighbouring titles never
    overlap, and keep at most ``max_lines`` lines (the last ends in "…"), so that a long prompt
    never runs into the figure's title."""
    width = max(8, int(inches * chars_per_inch))
    lines = [wrapped for line in str(text).split("\n") for wrapped in (textwrap.wrap(line, width) or [""])]
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][: width - 2].rstrip() + " …"
    return "\n".join(lines)


def plain_log_ticks(ax: Any) -> None:
    """Label a log-scaled y axis with plain numbers (0.3, 0.6, 1) instead of 3×10⁻¹."""
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)
