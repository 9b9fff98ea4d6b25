"""Heat-map arithmetic and pictures: resize, normalise, threshold, compare, overlay.

Everything here works on plain tensors ``[..., h, w]``, so it serves the cross-attention maps of
:mod:`sdprobe.attention` as well as any other spatial score. The conventions follow DAAM
(Tang et al., 2023, "What the DAAM: Interpreting Stable Diffusion Using Cross Attention";
castorini/daam 0.2.0): bicubic resizing clamped at zero, per-map min–max normalisation before a
threshold (DAAM's default threshold is 0.4), and an overlay in the ``jet`` colour map in which the
image fades out where the heat is high.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import colormaps
from matplotlib.figure import Figure
from PIL import Image

from .plots import image_grid

__all__ = [
    "heatmap_mask",
    "heatmap_overlay",
    "mask_iou",
    "normalize_heatmap",
    "overlay_figure",
    "pearson",
    "resize_heatmap",
]

#: DAAM's default threshold for a word's mask (``daam.utils.plot_mask_heat_map``).
DEFAULT_THRESHOLD = 0.4


def resize_heatmap(heat: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic resize of ``[..., h, w]`` maps to ``[..., *size]``, clamped at 0.

    Bicubic interpolation overshoots below zero next to sharp peaks; attention is a probability,
    so the undershoot is cut off (as DAAM does).
    """
    size = (int(size[0]), int(size[1]))
    if tuple(heat.shape[-2:]) == size:
        return heat.float().clamp(min=0)
    lead = heat.shape[:-2]
    flat = heat.float().reshape(-1, 1, *heat.shape[-2:])
    out = F.interpolate(flat, size=size, mode="bicubic", align_corners=False).clamp_(min=0)
    return out.reshape(*lead, *size)


def normalize_heatmap(heat: torch.Tensor) -> torch.Tensor:
    """Min–max normalise each ``[h, w]`` map of ``[..., h, w]`` to ``[0, 1]``.

    A constant map becomes all zeros (the 1e-8 guard, as in DAAM's ``expand_as``).
    """
    flat = heat.float().flatten(-2)
    low = flat.min(-1, keepdim=True).values
    high = flat.max(-1, keepdim=True).values
    return ((flat - low) / (high - low + 1e-8)).reshape(heat.shape)


def heatmap_mask(heat: torch.Tensor, threshold: float = DEFAULT_THRESHOLD) -> torch.Tensor:
    """Boolean mask ``[..., h, w]``: where the min–max normalised map exceeds ``threshold``."""
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must lie in [0, 1) (it applies to the min-max normalised map), not {threshold}")
    return normalize_heatmap(heat) > threshold


def mask_iou(a: torch.Tensor, b: torch.Tensor) -> float:
    """Intersection over union of two boolean masks of the same shape (1.0 when both are empty)."""
    if a.shape != b.shape:
        raise ValueError(f"masks differ in shape: {tuple(a.shape)} and {tuple(b.shape)}")
    a, b = a.bool(), b.bool()
    union = (a | b).sum().item()
    return 1.0 if union == 0 else (a & b).sum().item() / union


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson correlation of two maps of the same shape, over all their elements."""
    if a.shape != b.shape:
        raise ValueError(f"maps differ in shape: {tuple(a.shape)} and {tuple(b.shape)}")
    x = a.double().flatten() - a.double().mean()
    y = b.double().flatten() - b.double().mean()
    return float((x @ y) / (x.norm() * y.norm() + 1e-30))


def _as_rgb_array(image: Image.Image | np.ndarray | torch.Tensor) -> np.ndarray:
    """Any image → float array ``[H, W, 3]`` in ``[0, 1]``."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    if torch.is_tensor(image):  # [3, H, W] in [0, 1], as pipe(..., output_type="pt") returns it
        return image.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy()
    arr = np.asarray(image)
    return arr.astype(np.float32) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float32)


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
    rgb = _as_rgb_array(image)
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
        panels.insert(0, Image.fromarray((_as_rgb_array(image) * 255).round().astype(np.uint8)))
        titles = ["image", *titles]
    return image_grid(panels, titles, size=size, title=title)
