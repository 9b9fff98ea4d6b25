"""Charts: curves, estimates with their intervals, and count matrices."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from sdprobe.book.plots.figure import MAX_WIDTH, fit_title, new_figure, plain_log_ticks


def line_plot(
    x: Sequence[float] | np.ndarray,
    series: Mapping[str, Sequence[float] | np.ndarray],
    *,
    xlabel: str = "",
    ylabel: str = "",
    title: str | None = None,
    logy: bool = False,
    size: tuple[float, float] = (6.0, 3.2),
    marks: Mapping[str, float] | None = None,
) -> Figure:
    """One or more named curves over a shared x axis; ``marks`` draws labelled vertical lines."""
    fig = new_figure(figsize=size, layout="constrained")
    ax = fig.subplots()
    for name, ys in series.items():
        ax.plot(x, ys, label=name)
    for label, at in (marks or {}).items():
        ax.axvline(at, color="grey", linestyle=":", linewidth=1)
        ax.annotate(label, (at, 1.0), xycoords=("data", "axes fraction"), fontsize=9, ha="left", va="top")
    if logy:
        ax.set_yscale("log")
        plain_log_ticks(ax)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if len(series) > 1:
        ax.legend(fontsize=9)
    ax.grid(alpha=0.3)
    return fig


def interval_plot(
    panels: Mapping[str, Mapping[str, Sequence[float]]],
    *,
    title: str | None = None,
    percent: bool = True,
    width: float = 7.0,
) -> Figure:
    """Estimates with their 95 % intervals, one panel per measurement, one row per condition.

    Args:
        panels: panel title → condition label → ``(estimate, low, high)``.
        percent: show fractions as percentages.
    """
    labels = max((list(rows) for rows in panels.values()), key=len)
    fig = new_figure(figsize=(width, 0.55 * len(labels) + 1.2 + (0.4 if title else 0.0)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels), sharey=True, squeeze=False)).ravel()
    scale = 100.0 if percent else 1.0
    for ax, (name, rows) in zip(axes, panels.items()):
        for y, (label, (value, lo, hi)) in enumerate(rows.items()):
            ax.errorbar(value * scale, y, xerr=[[(value - lo) * scale], [(hi - value) * scale]], fmt="o", color="C0",
                        capsize=3)
            ax.annotate(f"{value * scale:.0f}" if percent else f"{value:.3g}", (value * scale, y),
                        textcoords="offset points", xytext=(0, 6), ha="center", fontsize=9)
        ax.set_yticks(range(len(labels)), labels, fontsize=9)
        ax.set_ylim(-0.6, len(labels) - 0.4)
        ax.invert_yaxis()
        ax.set_title(fit_title(name, width / len(panels), chars_per_inch=12), fontsize=10)
        ax.set_xlabel("%" if percent else "")
        ax.grid(axis="x", alpha=0.3)
    if title:
        fig.suptitle(fit_title(title, width, chars_per_inch=11))
    return fig


def count_matrix(
    counts: Sequence[Sequence[int]],
    rows: Sequence[str],
    columns: Sequence[str],
    *,
    xlabel: str = "",
    ylabel: str = "",
    title: str | None = None,
    size: float = 4.6,
) -> Figure:
    """A table of counts as shaded cells, each cell with its count (a confusion matrix): ``counts``
    ``[len(rows)][len(columns)]``, shaded by the share of its row."""
    table = np.asarray(counts, dtype=float)
    if table.shape != (len(rows), len(columns)):
        raise ValueError(f"counts is {table.shape}, but there are {len(rows)} rows and {len(columns)} columns")
    shares = table / np.maximum(table.sum(axis=1, keepdims=True), 1)
    fig = new_figure(figsize=(min(MAX_WIDTH, 1.2 + 0.62 * len(columns)), 1.0 + 0.5 * len(rows) + (0.4 if title else 0)),
                     layout="constrained")
    ax = fig.subplots()
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    for i in range(len(rows)):
        for j in range(len(columns)):
            if table[i, j]:
                ax.text(j, i, f"{int(table[i, j])}", ha="center", va="center", fontsize=9,
                        color="white" if shares[i, j] > 0.6 else "black")
    ax.set_xticks(range(len(columns)), columns, fontsize=9, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), rows, fontsize=9)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    if title:
        ax.set_title(fit_title(title, size, chars_per_inch=11), fontsize=10)
    return fig
