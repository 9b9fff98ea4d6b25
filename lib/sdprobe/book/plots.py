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
from matplotlib import colormaps, rc_context
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from PIL import Image

from sdprobe.analysis.heatmaps import normalize_heatmap, resize_heatmap
from sdprobe.images import to_array, to_pil

__all__ = ["BookFigure", "Player", "count_matrix", "heat_colorbar", "heatmap_overlay", "image_grid", "image_rows", "interval_plot", "latent_channels",
           "line_plot", "mask_figure", "new_figure", "overlay_figure", "player", "to_pil"]

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

    A ``figsize`` wider than :data:`MAX_WIDTH` is scaled down, aspect kept, so that the page
    never shrinks the figure's text below the size it was set in.
    """
    if "figsize" in kwargs and kwargs["figsize"][0] > MAX_WIDTH:
        w, h = kwargs["figsize"]
        kwargs["figsize"] = (MAX_WIDTH, h * MAX_WIDTH / w)
    return BookFigure(**kwargs)


class Player:
    """An animation that plays in a static HTML page, with no kernel: matplotlib's JavaScript
    export (a slider, play and step buttons, frames embedded as JPEG). Its text form names the
    frames, so notebook checks compare it like any other output."""

    def __init__(self, html: str, frames: int, panels: Sequence[str], title: str | None):
        self.html, self.frames, self.panels, self.title = html, frames, list(panels), title

    def _repr_html_(self) -> str:
        return f'<div class="sdprobe-player">{self.html}</div>'

    def __repr__(self) -> str:
        return f"<player: {self.frames} frames of {' | '.join(self.panels)}{' — ' + self.title if self.title else ''}>"

    @property
    def nbytes(self) -> int:
        """Size of the page fragment (the embedded frames dominate)."""
        return len(self._repr_html_().encode())


def player(
    frames: Sequence[Sequence[Image.Image | np.ndarray | torch.Tensor]],
    panels: Sequence[str],
    labels: Sequence[str],
    *,
    size: float = 2.6,
    title: str | None = None,
    fps: float = 4.0,
) -> Player:
    """Step through ``frames`` (one list of images per frame, one image per panel) in a player.

    Args:
        panels: a title per panel ("x_t", "x̂₀", "heat map of 'dog'").
        labels: a caption per frame ("step 3 of 20").
    """
    from matplotlib.animation import FuncAnimation

    if not frames or len(labels) != len(frames) or any(len(f) != len(panels) for f in frames):
        raise ValueError(f"a player needs one label per frame and one image per panel in every frame; got "
                         f"{len(frames)} frames, {len(labels)} labels, {len(panels)} panels")
    size = min(size, MAX_WIDTH / len(panels))
    fig = new_figure(figsize=(size * len(panels), size + 0.7), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels), squeeze=False)).ravel()
    shown = []
    for ax, name, image in zip(axes, panels, frames[0]):
        ax.set_axis_off()
        ax.set_title(name, fontsize=10)
        shown.append(ax.imshow(to_array(image)))
    caption = fig.suptitle(_caption(title, labels[0]), fontsize=10)

    def draw(k: int) -> list:
        for artist, image in zip(shown, frames[k]):
            artist.set_data(to_array(image))
        caption.set_text(_caption(title, labels[k]))
        return shown

    animation = FuncAnimation(fig, draw, frames=len(frames), interval=1000 / fps, blit=False)
    with rc_context({"animation.frame_format": "jpeg"}):  # a third of PNG's bytes for pictures
        html = animation.to_jshtml(fps=fps, embed_frames=True, default_mode="once")
    return Player(_offline(html), len(frames), panels, title)


# matplotlib's player links Font Awesome from a CDN for its button icons; a page of this book
# loads nothing from other hosts, so the icons become characters every font has.
_ICONS = {"fa fa-minus": "−", "fa fa-fast-backward": "|◀", "fa fa-step-backward": "◁", "fa fa-play fa-flip-horizontal": "◀",
          "fa fa-pause": "||", "fa fa-play": "▶", "fa fa-step-forward": "▷", "fa fa-fast-forward": "▶|", "fa fa-plus": "+"}


def _offline(html: str) -> str:
    import hashlib
    import re

    # matplotlib names the player's elements with a random id; one derived from the content makes
    # the same frames give the same page (and notebook checks compare it like any other output)
    ids = set(re.findall(r"_anim_img([0-9a-f]{32})", html))
    for old in ids:
        html = html.replace(old, hashlib.sha1(html.replace(old, "").encode()).hexdigest()[:32])
    html = re.sub(r'<link rel="stylesheet"\s+href="https?://[^"]*font-awesome[^"]*">', "", html)
    for cls, char in _ICONS.items():
        html = html.replace(f'<i class="{cls}"></i>', char)
    if "http://" in html or "https://" in html or '<i class="fa' in html:
        raise RuntimeError("matplotlib's animation template changed: it links another host or an unknown icon")
    return html


def _caption(title: str | None, label: str) -> str:
    return f"{title}\n{label}" if title else label


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
) -> Figure:
    """Show images in a grid, one title each. 2-D arrays are shown with ``cmap`` and a colour bar:
    one per panel, or with ``shared_scale`` one scale and one bar for all (panels to compare);
    ``symmetric`` centres the scale on 0 (for signed values and a diverging ``cmap``).

    Panels shrink so that the figure fits :data:`MAX_WIDTH`; titles stay 9 pt and wrap instead.
    """
    n = len(images)
    cols = cols or n
    rows = -(-n // cols)
    size = min(size, MAX_WIDTH / cols)
    fig = new_figure(figsize=(size * cols, size * rows + (0.4 if title else 0.0)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    maps = [np.asarray(img, dtype=np.float32) for img in images if _is_map(img)] if shared_scale else []
    limits = _limits(maps, symmetric) if maps else (None, None)
    shown = None
    for i, ax in enumerate(axes):
        ax.set_axis_off()
        if i >= n:
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
    """The channels of one latent ``[C, h, w]`` side by side on one colour scale centred on 0
    (red positive, blue negative), so that channels can be compared."""
    chans = [latent[c].detach().float().cpu().numpy() for c in range(latent.shape[0])]
    return image_grid(chans, [f"channel {c}" for c in range(len(chans))], size=size, title=title, cmap="RdBu_r",
                      shared_scale=True, symmetric=True, scale_label="latent value")


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
        plain_log_ticks(ax)
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
    cmap: str = "inferno",
    normalize: bool = True,
) -> Image.Image:
    """The image laid over its heat map, fading out where the heat is high: a PIL image.

    Each pixel is ``(1 - h) * image + h * cmap(h)``, with ``h`` the heat map resized to the image
    (bicubic) and, by default, min–max normalised; this is what DAAM's ``plot_overlay`` draws
    (the heat map under the image with alpha ``1 - h``), in a perceptual colour map rather than
    DAAM's ``jet``. Pair it with :func:`heat_colorbar`.

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
    cmap: str = "inferno",
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
    return heat_colorbar(image_grid(panels, titles, size=size, title=title), cmap=cmap)


def plain_log_ticks(ax: Any) -> None:
    """Label a log-scaled y axis with plain numbers (0.3, 0.6, 1) instead of 3×10⁻¹."""
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)


def heat_colorbar(fig: Figure, *, cmap: str = "inferno", label: str = "attention") -> Figure:
    """Add the shared colour bar of :func:`heatmap_overlay` panels to ``fig`` (returned): each
    map is scaled to 0–1 on its own, so the bar reads "least" to "most attended" in that map."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    bar = fig.colorbar(ScalarMappable(Normalize(0, 1), cmap=cmap), ax=fig.axes, shrink=0.9, pad=0.01, aspect=25)
    bar.set_label(label, fontsize=9)
    bar.ax.tick_params(labelsize=9)
    return fig


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
        ax.set_xticks(range(n), names, rotation=90, fontsize=8)
        ax.set_yticks(range(n), names, fontsize=8)
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
