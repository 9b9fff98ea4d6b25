"""Figures for the book. Every function returns a matplotlib ``Figure`` built without pyplot,
so a notebook shows it exactly once (as the cell's value) and nothing leaks between cells.

Make new figures with :func:`new_figure`: a pyplot-free figure has no inline backend to draw it,
so ours carries its own PNG representation for Jupyter, papermill and the book.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from PIL import Image

from sdprobe.analysis.heatmaps import normalize_heatmap, resize_heatmap
from sdprobe.images import to_array, to_pil

__all__ = ["BookFigure", "heatmap_overlay", "image_grid", "image_rows", "interval_plot", "latent_channels", "line_plot", "mask_figure", "new_figure",
           "overlay_figure", "to_pil"]

PNG_DPI = 100


class BookFigure(Figure):
    """A ``Figure`` that Jupyter shows as a PNG when it is a cell's value."""

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        # Fixed metadata: the same figure gives the same bytes on every run.
        self.savefig(buffer, format="png", dpi=PNG_DPI, metadata={"Software": None})
        return buffer.getvalue()


def new_figure(**kwargs: Any) -> BookFigure:
    """A pyplot-free figure that displays itself in notebooks (``kwargs`` go to ``Figure``)."""
    return BookFigure(**kwargs)


def image_grid(
    images: Sequence[Image.Image | torch.Tensor | np.ndarray],
    titles: Sequence[str] | None = None,
    *,
    cols: int | None = None,
    size: float = 2.0,
    title: str | None = None,
    cmap: str | None = None,
) -> Figure:
    """Show images in a grid, one title each. 2-D arrays are shown with ``cmap`` and a colour bar."""
    n = len(images)
    cols = cols or n
    rows = -(-n // cols)
    fig = new_figure(figsize=(size * cols, size * rows + (0.4 if title else 0.0)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for i, ax in enumerate(axes):
        ax.set_axis_off()
        if i >= n:
            continue
        img = images[i]
        if isinstance(img, np.ndarray) and img.ndim == 2 or torch.is_tensor(img) and img.dim() == 2:
            shown = ax.imshow(np.asarray(img, dtype=np.float32), cmap=cmap or "magma")
            fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02)
        else:
            ax.imshow(to_pil(img))
        if titles is not None:
            ax.set_title(fit_title(titles[i], size), fontsize=9)
    if title:
        fig.suptitle(fit_title(title, size * cols, chars_per_inch=11))
    return fig


def fit_title(text: str, inches: float, *, chars_per_inch: float = 14) -> str:
    """Wrap each line of ``text`` to the width of ``inches`` so that neighbouring titles never overlap."""
    width = max(8, int(inches * chars_per_inch))
    return "\n".join(textwrap.fill(line, width) for line in text.split("\n"))


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
    head = (0.5 if title else 0.0) + (0.45 if columns else 0.0)
    fig = new_figure(figsize=(width, width * aspect * len(pictures) * 1.08 + head), layout="constrained")
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
                          [fit_title(c, width / len(columns)) for c in columns], fontsize=8)
            ax.tick_params(length=0)
    if title:
        fig.suptitle(fit_title(title, width, chars_per_inch=11))
    return fig


def latent_channels(latent: torch.Tensor, *, size: float = 2.0, title: str | None = None) -> Figure:
    """The channels of one latent ``[C, h, w]`` side by side, each on its own colour scale."""
    chans = [latent[c].detach().float().cpu().numpy() for c in range(latent.shape[0])]
    return image_grid(chans, [f"channel {c}" for c in range(len(chans))], size=size, title=title, cmap="RdBu_r")


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
        ax.annotate(label, (at, 1.0), xycoords=("data", "axes fraction"), fontsize=8, ha="left", va="top")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if len(series) > 1:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def heatmap_overlay(
    image: Image.Image | np.ndarray | torch.Tensor,
    heat: torch.Tensor,
    *,
    cmap: str = "jet",
    normalize: bool = True,
) -> Image.Image:
    """The image laid over its heat map, fading out where the heat is high: a PIL image.

    Each pixel is ``(1 - h) * image + h * cmap(h)``, with ``h`` the heat map resized to the image
    (bicubic) and, by default, min–max normalised; this is what DAAM's ``plot_overlay`` draws
    (the heat map in ``jet`` under the image with alpha ``1 - h``).

    Args:
        image: PIL image, ``[H, W, 3]`` array (uint8, or float in [0, 1]), or ``[3, H, W]``
            tensor in [0, 1] (a pipeline's ``output_type="pt"``).
        heat: ``[h, w]`` map at any resolution.
    """
    rgb = to_array(image, unit=True)
    h = resize_heatmap(heat.detach().cpu(), rgb.shape[:2])
    h = normalize_heatmap(h) if normalize else h.clamp(0, 1)
    h = h.numpy()[..., None]
    colour = colormaps[cmap](h[..., 0])[..., :3]
    out = (1.0 - h) * rgb + h * colour
    return Image.fromarray((out * 255).round().clip(0, 255).astype(np.uint8))


def overlay_figure(
    image: Image.Image | np.ndarray | torch.Tensor,
    heatmaps: Mapping[str, torch.Tensor],
    *,
    size: float = 2.0,
    title: str | None = None,
    cmap: str = "jet",
    show_image: bool = True,
) -> Figure:
    """The image, then one overlay per named heat map, in a row (a pyplot-free ``Figure``).

    Args:
        heatmaps: e.g. ``{"dog": trace.word_heatmap("dog"), "field": ...}``; maps ``[h, w]``.
    """
    if not heatmaps:
        raise ValueError("overlay_figure needs at least one heat map")
    panels: list[Image.Image] = [heatmap_overlay(image, m, cmap=cmap) for m in heatmaps.values()]
    titles: Sequence[str] = list(heatmaps)
    if show_image:
        panels.insert(0, to_pil(to_array(image)))
        titles = ["image", *titles]
    return image_grid(panels, titles, size=size, title=title)


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
    from sdprobe.probes.textmask import as_layout, check_mask_kind, build_mask

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
        ax.set_xticks(range(n), names, rotation=90, fontsize=6)
        ax.set_yticks(range(n), names, fontsize=6)
        ax.set_title(kind, fontsize=10)
        any_empty = any_empty or bool(empty.any())
    if any_empty:
        fig.supxlabel("blue: may attend · orange: fully masked row (uniform attention over all positions)", fontsize=8)
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
            ax.annotate(f"{value * scale:.0f}" if percent else f"{value:.2g}", (value * scale, y),
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
