"""TKG-DM's chroma-key noise: starting noise that grows an object on a green back inside its box.

After TKG-DM (Morita et al., CVPR 2025, arXiv 2411.15580): shift the mean of latent channels 1
and 2 (0-based) so that their share of positive values rises by ``target`` (0.07 for SD 1.5-class
models, 0.11 for SDXL), and blend that shifted noise with the untouched noise through a Gaussian
mask on the object's box (:func:`chroma_key_noise`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from sdprobe.analysis.boxes import Box
from sdprobe.models import family_of

__all__ = ["CHROMA_CHANNELS", "SHIFT_TARGETS", "chroma_key_noise", "default_shift_target", "gaussian_box_mask",
           "positive_share", "shift_channels"]

#: TKG-DM's target rise of the positive share of channels 1 and 2, per model family.
SHIFT_TARGETS: dict[str, float] = {"sd1": 0.07, "sd2": 0.07, "sdxl": 0.11}

#: Latent channels TKG-DM shifts (0-based; the paper's "channels 2 and 3"): positive on both is green.
CHROMA_CHANNELS: tuple[int, int] = (1, 2)


def default_shift_target(pipe) -> float:
    """TKG-DM's target for this pipeline's family: 0.11 for SDXL, 0.07 for SD 1.x/2.x and toy."""
    return SHIFT_TARGETS[family_of(pipe)]


def positive_share(noise: torch.Tensor) -> torch.Tensor:
    """Share of positive values per sample and channel: ``[B, C, h, w] -> [B, C]``."""
    return (noise > 0).float().mean(dim=(-2, -1))


def shift_channels(
    noise: torch.Tensor,
    target: float,
    *,
    channels: Sequence[int] = CHROMA_CHANNELS,
    step: float = 0.01,
    max_shift: float = 5.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """TKG-DM's channel mean shift.

    For each sample and each of ``channels``, the smallest ``delta`` on a grid of ``step`` such
    that the share of positive values of ``noise + delta`` is at least its original share plus
    ``target`` (TKG-DM raises delta by 0.01 until this holds). Other channels are untouched and the
    standard deviation is unchanged.

    Args:
        noise: ``[B, C, h, w]`` Gaussian noise.
        target: rise of the positive share, in ``[0, 1)``.
    Returns:
        ``(shifted [B, C, h, w], delta [B, len(channels)])``.
    """
    if noise.dim() != 4:
        raise ValueError(f"noise must be [B, C, h, w], got shape {tuple(noise.shape)}")
    if not 0 <= target < 1:
        raise ValueError(f"target must lie in [0, 1), got {target}")
    bad = [c for c in channels if not 0 <= c < noise.shape[1]]
    if bad:
        raise ValueError(f"channels {bad} do not exist in a {noise.shape[1]}-channel latent")
    grid = torch.arange(0, max_shift + step / 2, step, dtype=torch.float64)
    vals = noise[:, list(channels)].detach().double().flatten(2).sort(dim=-1).values  # [B, k, n]
    n = vals.shape[-1]
    # share(delta) = #(x > -delta) / n, read off the sorted values for every delta at once
    below = torch.searchsorted(vals.contiguous(), (-grid).expand(*vals.shape[:2], -1).contiguous(), right=True)
    share = (n - below).double() / n  # [B, k, len(grid)]
    need = share[..., :1] + target
    ok = share >= need - 1e-12
    if not ok.any(dim=-1).all():
        raise ValueError(f"no shift up to {max_shift} raises the positive share by {target}")
    delta = grid[ok.double().argmax(dim=-1)].to(noise.dtype)  # first delta that reaches it
    out = noise.clone()
    out[:, list(channels)] += delta[..., None, None].to(noise.device)
    return out, delta


def gaussian_box_mask(boxes: Sequence[Box | Sequence[float]], h: int, w: int, *, sigma: float = 0.5) -> torch.Tensor:
    """Gaussian foreground mask ``[h, w]`` in ``[0, 1]``, one bump per box (their maximum).

    Each bump is ``exp(-(((x - cx) / (bw / 2))^2 + ((y - cy) / (bh / 2))^2) / (2 sigma^2))`` with
    the box's centre and size, so a full-image box gives TKG-DM's ``exp(-(x^2 + y^2) / (2 * 0.5^2))``
    on ``[-1, 1]^2``. Computed directly at latent resolution (TKG-DM upsamples a coarser grid).
    """
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    if not boxes:
        raise ValueError("gaussian_box_mask needs at least one box")
    ys = (torch.arange(h, dtype=torch.float32) + 0.5) / h
    xs = (torch.arange(w, dtype=torch.float32) + 0.5) / w
    mask = torch.zeros(h, w)
    for b in map(Box.of, boxes):
        cy, cx = (b.y0 + b.y1) / 2, (b.x0 + b.x1) / 2
        dy = ((ys - cy) / (b.height / 2))[:, None]
        dx = ((xs - cx) / (b.width / 2))[None, :]
        mask = torch.maximum(mask, torch.exp(-(dx**2 + dy**2) / (2 * sigma**2)))
    return mask


def chroma_key_noise(
    noise: torch.Tensor,
    boxes: Sequence[Box | Sequence[float]],
    *,
    target: float,
    sigma: float = 0.5,
) -> torch.Tensor:
    """TKG-DM's initial noise: ``A * z + (1 - A) * shift(z)`` with ``A`` the foreground mask.

    Args:
        noise: ``[B, 4, h, w]`` Gaussian noise z_T.
        boxes: the object boxes (all samples share them).
        target: rise of the positive share of channels 1 and 2 (see :func:`default_shift_target`).
    Returns:
        ``[B, 4, h, w]``: untouched inside the boxes, shifted towards green outside.
    """
    shifted, _ = shift_channels(noise, target)
    a = gaussian_box_mask(boxes, noise.shape[-2], noise.shape[-1], sigma=sigma).to(noise)
    return noise + (1 - a) * (shifted - noise)  # = a*z + (1-a)*z*, exact where z* = z
