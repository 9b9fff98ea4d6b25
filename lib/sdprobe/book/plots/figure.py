"""The book's figure: a pyplot-free matplotlib Figure that carries its own PNG, the column width, titles that fit, plain log ticks."""

from __future__ import annotations

import io
import textwrap
from typing import Any

from matplotlib.figure import Figure

#: Pixels per inch on screen: a figure of ``MAX_WIDTH`` inches fills the text column.
SCREEN_DPI = 100
#: Pixels per inch in the PNG, twice the screen's, so that figures stay sharp on high-density
#: screens and when zoomed (the page shows the PNG at ``SCREEN_DPI``, through its ``width``).
PNG_DPI = 2 * SCREEN_DPI

#: Widest figure, in inches at ``SCREEN_DPI``: the book's text column (about 690 px in a 1280-px
#: window). A wider figure would be scaled down by the browser, and its 9-pt labels with it.
MAX_WIDTH = 6.8


class BookFigure(Figure):
    """A ``Figure`` that Jupyter shows as a PNG when it is a cell's value: rendered at twice its
    screen size, shown at its screen size, with its title as the picture's alt text."""

    def _repr_png_(self) -> tuple[bytes, dict[str, Any]]:
        buffer = io.BytesIO()
        # Fixed metadata: the same figure gives the same bytes on every run.
        self.savefig(buffer, format="png", dpi=PNG_DPI, metadata={"Software": None})
        from PIL import Image

        width = Image.open(io.BytesIO(buffer.getvalue())).width  # savefig may crop or pad
        return buffer.getvalue(), {"width": round(width * SCREEN_DPI / PNG_DPI), "alt": alt_text(self)}


class VectorFigure(BookFigure):
    """A :class:`BookFigure` that the book shows as SVG (a diagram: sharp at any zoom), with the
    PNG kept for viewers without SVG."""

    def _repr_svg_(self) -> str:
        from matplotlib import rc_context

        buffer = io.StringIO()
        # A fixed salt and no date: the same diagram gives the same SVG on every run.
        with rc_context({"svg.hashsalt": "sdprobe", "svg.fonttype": "none"}):
            self.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
        return buffer.getvalue()


def alt_text(fig: Figure) -> str:
    """What a figure shows, for readers who cannot see it: its title, else its panels' titles."""
    titles = [fig.get_suptitle()] if fig.get_suptitle() else []
    if not titles:
        titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    text = " ".join(" ".join(titles).split())
    return text[:300] or "A figure of this chapter"


def new_figure(*, vector: bool = False, full_width: bool = True, **kwargs: Any) -> BookFigure:
    """A pyplot-free figure that displays itself in notebooks (``kwargs`` go to ``Figure``);
    ``vector=True`` for a diagram shown as SVG (a ``VectorFigure``).

    A ``figsize`` of another width is scaled, aspect kept, to the column's
    :data:`~sdprobe.book.plots.figure.MAX_WIDTH`: the page never shrinks the figure's text below
    the size it was set in, and every figure spans the column. ``full_width=False`` leaves a
    narrower figure as it is (an animation, whose every frame is embedded in the page).
    """
    if "figsize" in kwargs:
        w, h = kwargs["figsize"]
        if w > MAX_WIDTH or full_width and w < MAX_WIDTH:
            kwargs["figsize"] = (MAX_WIDTH, h * MAX_WIDTH / w)
    return (VectorFigure if vector else BookFigure)(**kwargs)


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
    """Label a log-scaled y axis with plain numbers (0.3, 0.6, 1) instead of 3×10⁻¹, and never
    more labels than fit: the minor ticks are labelled (at 2 and 5 of each decade) only when the
    axis spans less than two decades (more of them below one decade), else only the decades are."""
    import math

    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ax.yaxis.set_major_formatter(plain)
    lo, hi = ax.get_ylim()
    decades = math.log10(hi / lo) if lo > 0 and hi > 0 else 99
    if decades < 2:
        subs = (2.0, 5.0) if decades >= 1 else (1.5, 2.0, 3.0, 5.0, 7.0)
        ax.yaxis.set_minor_locator(LogLocator(subs=subs))
        ax.yaxis.set_minor_formatter(plain)
    else:
        ax.yaxis.set_minor_formatter(NullFormatter())
