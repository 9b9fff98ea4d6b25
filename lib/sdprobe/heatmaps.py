"""Heat-map arithmetic: aggregate, resize, normalise, threshold.

Everything here works on plain tensors ``[..., h, w]``, so it serves the cross-attention maps of
:mod:`sdprobe.attention` as well as any other spatial score; pictures of maps are
:mod:`sdprobe.plots`'. The conventions follow DAAM (Tang et al., 2023, "What the DAAM:
Interpreting Stable Diffusion Using Cross Attention"; castorini/daam 0.2.0): bicubic resizing
clamped at zero, equal weight for every (layer, head) map, and per-map min–max normalisation
before a threshold (DAAM's default threshold is 0.4). Masks are compared with
:func:`sdprobe.metrics.mask_iou`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "DEFAULT_THRESHOLD",
    "aggregate_maps",
    "heatmap_mask",
    "map_shape",
    "normalize_heatmap",
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
