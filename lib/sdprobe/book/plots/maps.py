"""Heat maps over pictures: overlays, overlay figures and the attention colour bar."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from PIL import Image

from sdprobe.analysis.heatmaps import normalize_heatmap, resize_heatmap
from sdprobe.book.plots.grids import image_grid
from sdprobe.images import to_array, to_pil


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


def heat_colorbar(fig: Figure, *, cmap: str = "inferno", label: str = "attention") -> Figure:
    """Add the shared colour bar of :func:`heatmap_overlay` panels to ``fig`` (returned): each
    map is scaled to 0–1 on its own, so the bar reads "least" to "most attended" in that map."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    bar = fig.colorbar(ScalarMappable(Normalize(0, 1), cmap=cmap), ax=fig.axes, shrink=0.9, pad=0.01, aspect=25)
    bar.set_label(label, fontsize=9)
    bar.ax.tick_params(labelsize=9)
    return fig
