"""A step player: frames of a generation in an HTML animation that works offline."""

from __future__ import annotations

import re
from collections.abc import Sequence
from html import escape as html_escape

import numpy as np
import torch
from matplotlib import rc_context
from PIL import Image

from sdprobe.book.plots.figure import MAX_WIDTH, PNG_DPI, _caption, new_figure
from sdprobe.images import to_array


class Player:
    """An animation that plays in a static HTML page, with no kernel: matplotlib's JavaScript
    export (a slider, play and step buttons, frames embedded as JPEG at twice their screen size).
    Its text form names the frames, so notebook checks compare it like any other output.

    A *slider* (:func:`slider`) is the same widget over precomputed runs of one parameter
    (``values``) instead of the steps of one run."""

    def __init__(self, html: str, frames: int, panels: Sequence[str], title: str | None,
                 values: Sequence[str] | None = None):
        self.html, self.frames, self.panels, self.title = html, frames, list(panels), title
        self.values = list(values) if values is not None else None

    def _repr_html_(self) -> str:
        kind = "sdprobe-player" if self.values is None else "sdprobe-player sdprobe-slider"
        return f'<div class="{kind}">{self.html}</div>'

    def __repr__(self) -> str:
        title = " — " + self.title if self.title else ""
        if self.values is not None:
            return f"<slider: {' | '.join(self.panels)} at {', '.join(self.values)}{title}>"
        return f"<player: {self.frames} frames of {' | '.join(self.panels)}{title}>"

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
    if not frames or len(labels) != len(frames) or any(len(f) != len(panels) for f in frames):
        raise ValueError(f"a player needs one label per frame and one image per panel in every frame; got "
                         f"{len(frames)} frames, {len(labels)} labels, {len(panels)} panels")
    return _animate(frames, panels, labels, size=size, title=title, fps=fps)


def slider(
    frames: Sequence[Sequence[Image.Image | np.ndarray | torch.Tensor]],
    panels: Sequence[str],
    values: Sequence[float | str],
    *,
    name: str,
    size: float = 2.6,
    title: str | None = None,
) -> Player:
    """A slider over precomputed runs: ``frames[k]`` (one image per panel) is what the chapter
    drew with parameter ``name`` at ``values[k]``; dragging the slider shows each in turn, in a
    static page with no kernel.

    Args:
        panels: a title per panel.
        values: the parameter's value for each frame, in the slider's order.
        name: the parameter, as the caption names it ("guidance scale", "threshold").
    """
    if not frames or len(values) != len(frames) or any(len(f) != len(panels) for f in frames):
        raise ValueError(f"a slider needs one value per frame and one image per panel in every frame; got "
                         f"{len(frames)} frames, {len(values)} values, {len(panels)} panels")
    shown = [f"{v:g}" if isinstance(v, (int, float)) else str(v) for v in values]
    made = _animate(frames, panels, [f"{name} = {v}   (drag the slider)" for v in shown], size=size, title=title,
                    fps=1.0)
    return Player(made.html, made.frames, panels, title, values=shown)


def _animate(frames, panels, labels, *, size: float, title: str | None, fps: float) -> Player:
    from matplotlib.animation import FuncAnimation

    size = min(size, MAX_WIDTH / len(panels))
    # twice the screen's pixels per inch: the page shows each frame at the column's width
    fig = new_figure(figsize=(size * len(panels), size + 0.7), layout="constrained", dpi=PNG_DPI,
                     full_width=False)
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
    html = _offline(html)
    # shown at half its pixels (the frames are drawn at twice the screen's density), with alt text
    half = round(fig.get_figwidth() * PNG_DPI / 2)
    alt = html_escape(title or " | ".join(panels), quote=True)
    html = re.sub(r'<img id="(_anim_img[0-9a-f]{32})"', lambda m: f'<img id="{m.group(1)}" width="{half}" alt="{alt}"',
                  html, count=1)
    return Player(html, len(frames), panels, title)


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
