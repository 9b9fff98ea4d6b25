"""Chapter 02's figure: the text encoder's attention masks, one panel per kind."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from sdprobe.book.plots.figure import MAX_WIDTH, new_figure

_ALLOWED, _BLOCKED, _EMPTY_ROW = 2, 0, 1

_MASK_CMAP = ListedColormap(["white", "#f4c27a", "#3b6fb6"])  # blocked, fully masked row, allowed


def mask_figure(
    layout: Any,
    kinds: Sequence[str] = ("causal", "hopping", "hopping-code"),
    *,
    labels: Sequence[str] | None = None,
    padding: int = 1,
    size: float = 3.2,
) -> Figure:
    """The masks as pictures (Fig. 4 / Fig. 6): one panel per kind, rows = queries.

    Blue cells may attend; orange rows are fully masked, which an additive mask turns into
    uniform attention over all positions. Only the used positions (plus ``padding`` pad
    positions) are drawn.

    Args:
        layout: a :class:`PromptLayout` (e.g. ``embeds.layout``) or word counts per prompt.
        kinds: mask kinds to draw, from :data:`MASK_KINDS`.
        labels: tick labels for the positions (e.g. ``embeds.tokens``); default ``BOS, T1…``.
        padding: how many pad positions to show after the end token.
    """
    from sdprobe.probes.textmask import as_layout, build_mask, check_mask_kind

    layout = as_layout(layout)
    for kind in kinds:
        check_mask_kind(kind)
    n = min(layout.used + max(padding, 0), layout.max_length)
    names = list(labels if labels is not None else layout.labels())[:n]
    fig = new_figure(figsize=(size * len(kinds), size + 0.3), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(kinds), squeeze=False)).ravel()
    any_empty = False
    for ax, kind in zip(axes, kinds):
        allowed = build_mask(layout, kind)[:n, :n].numpy()
        empty = ~build_mask(layout, kind)[:n].any(dim=1).numpy()
        cells = np.where(allowed, _ALLOWED, _BLOCKED)
        cells[empty] = _EMPTY_ROW
        ax.imshow(cells, cmap=_MASK_CMAP, vmin=0, vmax=2, interpolation="nearest")
        for s in layout.separators:  # thin lines at the prompt boundaries
            if s < n:
                ax.axhline(s, color="grey", linewidth=0.5)
                ax.axvline(s, color="grey", linewidth=0.5)
        ticks = _sparse_ticks(n, layout.separators, min(size, MAX_WIDTH / len(kinds)) * 0.8)
        ax.set_xticks(ticks, [names[k] for k in ticks], rotation=90, fontsize=9)
        ax.set_yticks(ticks, [names[k] for k in ticks], fontsize=9)
        ax.set_title(kind, fontsize=10)
        any_empty = any_empty or bool(empty.any())
    if any_empty:
        fig.supxlabel("blue: may attend · orange: fully masked row (uniform attention over all positions)", fontsize=9)
    return fig


def _sparse_ticks(n: int, separators: Sequence[int], inches: float) -> list[int]:
    """Positions to label on a panel ``inches`` wide: the first, the last, every separator, and
    evenly spaced ones in between, never closer than a 9-pt label needs (about 0.16 in)."""
    room = max(2, int(inches / 0.16))
    step = max(1, -(-n // room))
    keep = {0, n - 1, *(s for s in separators if s < n), *range(0, n, step)}
    chosen: list[int] = []
    for k in sorted(keep):  # separators first claim their place; drop what would touch them
        if not chosen or k - chosen[-1] >= step or k in separators or k == n - 1:
            if chosen and k - chosen[-1] < step and chosen[-1] not in separators and chosen[-1] != 0:
                chosen.pop()
            chosen.append(k)
    return chosen
