"""Heat-map arithmetic: aggregate, resize, normalise, threshold.

Everything here works on plain tensors ``[..., h, w]``, so it serves the cross-attention maps of
:mod:`sdprobe.probes.attention` as well as any other spatial score; pictures of maps are
:mod:`sdprobe.book.plots`'. The conventions follow DAAM (Tang et al., 2023, "What the DAAM:
Interpreting Stable Diffusion Using Cross Attention"; castorini/daam 0.2.0): bicubic resizing
clamped at zero, equal weight for every (layer, head) map, and per-map min–max normalisation
before a threshold (DAAM's default threshold is 0.4). Masks are compared with
:func:`sdprobe.analysis.metrics.mask_iou`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from sdprobe.analysis.boxes import Box

__all__ = [
    "DEFAULT_THRESHOLD",
    "aggregate_maps",
    "box_kernel",
    "heatmap_mask",
    "map_shape",
    "normalize_heatmap",
    "resize_heatmap",
    "search_region",
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


def map_shape(length: int, latent_size: tuple[int, int]) -> tuple[int, int]:
    """``(h, w)`` of an attention map with ``length`` positions in a U-Net on ``latent_size``
    latents (each level halves the side, rounding up).

    Raises:
        ValueError: no level of that latent has ``length`` positions.
    """
    h, w = latent_size
    scale = 1
    while scale <= 2 * max(h, w):
        hs, ws = -(-h // scale), -(-w // scale)
        if hs * ws == length:
            return hs, ws
        scale *= 2
    raise ValueError(f"a map of {length} positions fits no level of a {h}x{w} latent")


def aggregate_maps(source: Mapping[str, torch.Tensor], sites: Sequence[tuple[str, int]], indices: Sequence[int],
                   image: int, size: tuple[int, int], latent_size: tuple[int, int]) -> torch.Tensor:
    """DAAM's aggregation of attention maps into heat maps: ``[k, *size]`` float32.

    Args:
        source: per site path, attention probabilities ``[images, heads, L, T]`` (per head) or
            ``[images, L, T]`` (a head mean, standing for all its heads).
        sites: ``(path, heads)`` of the sites to aggregate.
        indices: the ``k`` context positions wanted.
        image: which image.
        size: the output size; each (site, head) map is upsampled straight to it.
        latent_size: the latent's ``(h, w)`` (to know each map's shape).

    Each (site, head) map of each position is upsampled bicubically to ``size`` and clamped at
    0, then all are averaged with equal weight.
    """
    total: torch.Tensor | float = 0.0
    weight = 0
    for path, heads in sites:
        maps = source[path][image].float()
        per_head = maps.dim() == 3
        maps = maps if per_head else maps[None]  # [g, L, T]
        h, w = map_shape(maps.shape[1], latent_size)
        picked = maps[:, :, list(indices)].transpose(1, 2).reshape(maps.shape[0], len(indices), h, w)
        up = resize_heatmap(picked, size).sum(dim=0)  # [k, *size]
        times = 1 if per_head else heads  # a head-mean stands for all its heads
        total = total + up * times
        weight += maps.shape[0] * times
    return total / weight


# ----------------------------------------------------------------------------- region search


def box_kernel(bh: int, bw: int) -> torch.Tensor:
    """The draft's search filter ``[bh, bw]``: box-shaped, highest at the centre, falling with
    distance and negative towards the border.

    ``k0 = 1 - 2 r^2`` with ``r`` the distance from the centre in half-box units (``r = 1`` at the
    middle of each edge), made zero-sum and scaled to a peak of 1. Zero-sum (our choice; the draft
    gives only the shape) means a flat map scores 0 everywhere, so only attention that is higher in
    the middle than at the border of the box can win, whatever the map's overall level.
    """
    if bh < 1 or bw < 1:
        raise ValueError(f"kernel size must be at least 1 × 1, got {bh} × {bw}")
    ys = ((torch.arange(bh, dtype=torch.float64) + 0.5) / bh - 0.5) * 2
    xs = ((torch.arange(bw, dtype=torch.float64) + 0.5) / bw - 0.5) * 2
    k = 1 - 2 * (ys[:, None] ** 2 + xs[None, :] ** 2)
    k = k - k.mean()
    peak = k.max()
    return (k / peak if peak > 0 else k).float()  # a 1 × 1 box has no border: all zeros


def _box_size(size: Box | Sequence[float]) -> tuple[float, float]:
    """``(width, height)`` fractions from a Box, an ``(x0, y0, x1, y1)`` box or a ``(width, height)`` pair."""
    if isinstance(size, Box) or len(size) == 4:
        b = Box.of(size)
        return b.width, b.height
    if len(size) != 2:
        raise ValueError(f"size must be a Box, (x0, y0, x1, y1) or (width, height); got {tuple(size)}")
    bw, bh = float(size[0]), float(size[1])
    if not (0 < bw <= 1 and 0 < bh <= 1):
        raise ValueError(f"box size must be fractions in (0, 1], got width {bw}, height {bh}")
    return bw, bh


def search_region(heatmap: torch.Tensor, size: Box | Sequence[float] | tuple[float, float]) -> Box:
    """Where a box of the given size best fits a word's cross-attention map (the draft's eq. 3).

    ``(i, j) = argmax_{i,j} sum_{m,n} A(i + m, j + n) * kernel(m, n)`` over every position where the
    box lies wholly inside the map, with :func:`box_kernel` the box-shaped filter; ties go to the
    first position in row-major order.

    Args:
        heatmap: ``[h, w]``, or ``[steps, h, w]`` (averaged over steps first).
        size: a :class:`Box` (only its width and height are used) or ``(width, height)`` fractions.
    Returns:
        the box of that size at the best position, in fractions of the image.
    """
    a = torch.as_tensor(heatmap, dtype=torch.float32)
    if a.dim() == 3:
        a = a.mean(dim=0)
    if a.dim() != 2:
        raise ValueError(f"heatmap must be [h, w] or [steps, h, w], got shape {tuple(a.shape)}")
    if not torch.isfinite(a).all():
        raise ValueError("heatmap holds NaN or infinite values")
    bw_f, bh_f = _box_size(size)
    h, w = a.shape
    bh, bw = round(bh_f * h), round(bw_f * w)
    if bh < 1 or bw < 1:
        raise ValueError(f"a {bw_f} × {bh_f} box is smaller than one cell of the {h} × {w} map")
    score = F.conv2d(a[None, None], box_kernel(bh, bw)[None, None])[0, 0]  # [h - bh + 1, w - bw + 1]
    i, j = divmod(int(score.flatten().argmax()), score.shape[1])
    return Box(j / w, i / h, (j + bw) / w, (i + bh) / h)
