"""Pictures in grids and rows: images, heat maps and latent channels, with their labels."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image

from sdprobe.book.plots.figure import MAX_WIDTH, fit_title, new_figure
from sdprobe.images import to_pil


def image_grid(
    images: Sequence[Image.Image | torch.Tensor | np.ndarray],
    titles: Sequence[str] | None = None,
    *,
    cols: int | None = None,
    size: float = 2.0,
    title: str | None = None,
    cmap: str | None = None,
    shared_scale: bool = False,
    scale_label: str | None = None,
    symmetric: bool = False,
    keep_rows: bool = False,
) -> Figure:
    """Show images in a grid, one title each. 2-D arrays are shown with ``cmap`` and a colour bar:
    one per panel, or with ``shared_scale`` one scale and one bar for all (panels to compare);
    ``symmetric`` centres the scale on 0 (for signed values and a diverging ``cmap``).

    Panels shrink so that the figure fits :data:`~sdprobe.book.plots.figure.MAX_WIDTH`, but never
    below :data:`MIN_PANEL`: a grid with more columns than fit wraps, in reading order, onto at
    most ``MAX_COLUMNS`` (5) columns; with ``keep_rows`` (rows that belong together, such as
    frames above their heat maps) it is cut instead into blocks of columns drawn one under the
    other, each block keeping every row of its columns. Titles stay 9 pt and wrap instead.
    """
    n = len(images)
    cols = cols or n
    if cols > MAX_COLUMNS and keep_rows:
        images, titles, cols = _column_blocks(list(images), None if titles is None else list(titles), cols)
        n = len(images)
    elif cols > MAX_COLUMNS:
        cols = _even_width(cols)
    rows = -(-n // cols)
    # panels fill the column, but a picture grows no larger than MAX_PANEL (one or two panels
    # are not stretched across the page)
    size = min(max(size, MIN_PANEL, MAX_WIDTH / cols if cols >= 3 else 0.0), MAX_WIDTH / cols, MAX_PANEL)
    fig = new_figure(figsize=(size * cols, size * rows + (0.4 if title else 0.0)), layout="constrained",
                     full_width=False)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    maps = [np.asarray(img, dtype=np.float32) for img in images if img is not None and _is_map(img)] \
        if shared_scale else []
    limits = _limits(maps, symmetric) if maps else (None, None)
    shown = None
    for i, ax in enumerate(axes):
        ax.set_axis_off()
        if i >= n or images[i] is None:
            continue
        img = images[i]
        if _is_map(img):
            values = np.asarray(img, dtype=np.float32)
            lo, hi = limits if shared_scale else _limits([values], symmetric) if symmetric else (None, None)
            shown = ax.imshow(values, cmap=cmap or "magma", vmin=lo, vmax=hi)
            if not shared_scale:
                fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02).ax.tick_params(labelsize=9)
        else:
            ax.imshow(to_pil(img))
        if titles is not None:
            ax.set_title(fit_title(titles[i], size), fontsize=9)
    if shared_scale and shown is not None:
        bar = fig.colorbar(shown, ax=list(axes), shrink=0.8, pad=0.01, aspect=25)
        bar.ax.tick_params(labelsize=9)
        if scale_label:
            bar.set_label(scale_label, fontsize=9)
    if title:
        fig.suptitle(fit_title(title, size * cols, chars_per_inch=11))
    return fig


#: Smallest panel in inches (at the screen's 100 px per inch), since a picture under about
#: 128 px shows too little to read.
MIN_PANEL = 1.3
#: Largest panel, in inches: a 128-pixel toy picture drawn larger only blurs.
MAX_PANEL = 2.6
#: Most panels a row can hold at :data:`MIN_PANEL` in the column's width.
MAX_COLUMNS = int(MAX_WIDTH // MIN_PANEL)


def _even_width(cols: int) -> int:
    """At most :data:`MAX_COLUMNS` columns, evenly: 8 columns become 4 + 4, not 5 + 3."""
    return -(-cols // -(-cols // MAX_COLUMNS))


def _column_blocks(images: list, titles: list | None, cols: int) -> tuple[list, list | None, int]:
    """Re-order a ``rows × cols`` grid into blocks of at most :data:`MAX_COLUMNS` columns, one
    block under the other; empty cells (``None``) pad the last block's rows."""
    rows = -(-len(images) // cols)
    width = _even_width(cols)
    order: list[int | None] = []
    for start in range(0, cols, width):
        for r in range(rows):
            for c in range(start, start + width):
                k = r * cols + c
                order.append(k if c < cols and k < len(images) else None)
    pick = lambda seq, k: seq[k] if k is not None else None  # noqa: E731
    return ([pick(images, k) for k in order], None if titles is None else [pick(titles, k) or "" for k in order],
            width)


def _is_map(img: Any) -> bool:
    """A 2-D array: drawn with a colour map, not as a picture."""
    return isinstance(img, np.ndarray) and img.ndim == 2 or torch.is_tensor(img) and img.dim() == 2


def _limits(maps: Sequence[np.ndarray], symmetric: bool) -> tuple[float, float]:
    """One colour scale over ``maps``: their range, or centred on 0 with ``symmetric``."""
    lo, hi = min(float(m.min()) for m in maps), max(float(m.max()) for m in maps)
    if symmetric:
        hi = max(abs(lo), abs(hi))
        lo = -hi
    return lo, hi


def image_rows(
    images: Sequence[Image.Image | np.ndarray],
    labels: Sequence[str],
    *,
    columns: Sequence[str] | None = None,
    width: float = 8.0,
    title: str | None = None,
) -> Figure:
    """Stack wide images (strips of equal size) one per row, each labelled on its left.

    Args:
        images: the strips, all of one size; each holds ``len(columns)`` panels side by side.
        labels: one label per strip.
        columns: optional titles of the panels, written above the first strip.
    """
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    pictures = [to_pil(image) for image in images]
    aspect = pictures[0].height / pictures[0].width
    head = (0.5 if title else 0.0) + (0.6 if columns else 0.0)
    shown = width - 1.4  # the strips' width, once the row labels on the left have their room
    fig = new_figure(figsize=(width, shown * aspect * len(pictures) * 1.06 + head), layout="constrained")
    axes = np.atleast_1d(fig.subplots(len(pictures), 1, squeeze=False)).ravel()
    for k, (ax, picture, label) in enumerate(zip(axes, pictures, labels)):
        ax.imshow(picture)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
        for spine in ax.spines.values():
            spine.set_visible(False)
        if k == 0 and columns:
            step = picture.width / len(columns)
            ax.xaxis.tick_top()
            ax.set_xticks([(c + 0.5) * step for c in range(len(columns))],
                          [fit_title(c, shown / len(columns), chars_per_inch=11) for c in columns], fontsize=9)
            ax.tick_params(length=0)
    if title:
        fig.suptitle(fit_title(title, width, chars_per_inch=11))
    return fig


def latent_channels(latent: torch.Tensor, *, size: float = 2.0, title: str | None = None) -> Figure:
    """The channels of one latent ``[C, h, w]`` side by side on one colour scale centred on 0
    (red positive, blue negative), so that channels can be compared."""
    chans = [latent[c].detach().float().cpu().numpy() for c in range(latent.shape[0])]
    return image_grid(chans, [f"channel {c}" for c in range(len(chans))], size=size, title=title, cmap="RdBu_r",
                      shared_scale=True, symmetric=True, scale_label="latent value")
