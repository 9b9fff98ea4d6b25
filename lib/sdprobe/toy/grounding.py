"""Token-level grounding for the toy model's training: the cross-attention of an object's words
is pulled inside that object's mask.

The toy's text encoder is trained with the U-Net, and without help it spreads every caption over
all 77 positions: the U-Net then reads an almost uniform average of them (measured on a model
trained without grounding: every position got 1–3 % of the attention, the 70 padding positions
80–90 % together), so a word's heat map says little about where its object is. TokenCompose
(Wang et al., CVPR 2024, arXiv 2312.03626) fine-tunes Stable Diffusion with a token loss that
asks each noun's attention to fall inside its segmentation mask, which also improves
multi-object composition. We use its token term, ``(1 - attention inside / attention total)^2``,
for the shape word and the colour word of every object (a count's plural word against the union
of its objects), and its pixel term, a binary cross-entropy between the shape word's attention
and the object's mask, averaged over the down- and up-block cross-attention layers and heads.

The toy world gives exact masks, so the targets are free. What it means for the book: the toy's
heat maps localise partly *because* it was trained to; chapter 01 says so.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F

from sdprobe.probes.attention import CrossAttentionRecorder, CrossAttentionSite, cross_attention_sites
from sdprobe.probes.hooks import ModuleHooks
from sdprobe.world import Scene

__all__ = ["GROUPS", "MASK_SIZE", "attention_maps", "grounding_loss", "grounding_targets", "pixel_loss"]

#: Object groups per caption: one (single, count) or two (pair).
GROUPS = 2
#: Masks are stored at the latent size and pooled to each layer's.
MASK_SIZE = 16


def grounding_targets(scene: Scene, size: int = MASK_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Per object group: its mask's coverage of each latent cell, float32 ``[2, size, size]``, and
    the prompt positions of its shape and colour words, int ``[2, 2]`` (``-1``: no such word or
    no such group). Positions count the start token as 0; every word of the world is one token."""
    words = scene.caption.split()
    masks = np.zeros((GROUPS, size, size), np.float32)
    tokens = -np.ones((GROUPS, 2), np.int64)
    groups = [list(range(len(scene.objects)))] if scene.kind != "pair" else [[0], [1]]
    drawn = scene.masks()
    cell = scene.size // size
    used = set()
    for g, members in enumerate(groups):
        union = drawn[members].any(0)
        masks[g] = union.reshape(size, cell, size, cell).mean((1, 3))
        obj = scene.objects[members[0]]
        names = {obj.shape, obj.shape + "s"}
        for slot, wanted in enumerate((names, {obj.colour})):
            pos = next((i for i, w in enumerate(words) if w in wanted and i not in used), None)
            if pos is not None:
                used.add(pos)
                tokens[g, slot] = pos + 1
    return masks, tokens


@contextmanager
def attention_maps(unet: torch.nn.Module) -> Iterator[list[torch.Tensor]]:
    """Record the cross-attention probabilities of the down- and up-block layers during the
    forward passes inside the block (a list, one head-averaged ``[B, HW, 77]`` tensor per layer and
    pass, with their gradients). Attached through :class:`~sdprobe.probes.hooks.ModuleHooks`, so the
    U-Net's processors are restored on exit, also after an exception."""
    store: list[torch.Tensor] = []

    def keep(site: CrossAttentionSite, probs: torch.Tensor) -> None:
        store.append(probs.mean(1))

    with ModuleHooks(unet, "attention_maps") as hooks:
        for site in cross_attention_sites(unet):
            if site.layer != "MID":
                hooks.processor(site.path, CrossAttentionRecorder(keep, site, output="fused"))
        yield store


def grounding_loss(maps: list[torch.Tensor], masks: torch.Tensor, tokens: torch.Tensor,
                   keep: torch.Tensor | None = None) -> torch.Tensor:
    """TokenCompose's token loss, averaged over layers, object groups and their words.

    Args:
        maps: head-averaged attention ``[B, HW, T]`` per layer (square maps).
        masks: mask coverage ``[B, G, 16, 16]`` per object group (pooled to each layer's size).
        tokens: prompt positions ``[B, G, 2]`` of each group's words, ``-1`` for none.
        keep: bool ``[B]``, the images whose caption was not dropped (others have no words).
    """
    valid = tokens >= 0
    if keep is not None:
        valid = valid & keep[:, None, None]
    if not valid.any():
        return maps[0].sum() * 0.0
    terms = []
    for probs in maps:
        m = _coverage(masks, probs)  # [B, G, HW]
        index = tokens.clamp(min=0)  # [B, G, 2]
        a = torch.gather(probs.transpose(1, 2), 1, index.flatten(1)[:, :, None].expand(-1, -1, probs.shape[1]))
        a = a.view(*tokens.shape, -1)  # [B, G, 2, HW]
        inside = (a * m[:, :, None]).sum(-1) / a.sum(-1).clamp(min=1e-8)
        terms.append(((1 - inside) ** 2)[valid])
    return torch.cat(terms).mean()


def _coverage(masks: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """Object masks ``[B, G, 16, 16]`` pooled to the square map of ``probs`` ``[B, HW, T]``: ``[B, G, HW]``."""
    return F.adaptive_avg_pool2d(masks.float(), int(round(probs.shape[1] ** 0.5))).flatten(2)


def pixel_loss(maps: list[torch.Tensor], masks: torch.Tensor, tokens: torch.Tensor,
               keep: torch.Tensor | None = None) -> torch.Tensor:
    """TokenCompose's pixel term for each object's shape word: the binary cross-entropy between
    the word's attention probability at each position and the object's mask coverage there, so
    the word is read all over its object and nowhere else (the token term alone lets its
    attention gather on part of the object). Arguments as :func:`grounding_loss`."""
    nouns = tokens[..., 0]  # [B, G]
    valid = nouns >= 0
    if keep is not None:
        valid = valid & keep[:, None]
    if not valid.any():
        return maps[0].sum() * 0.0
    terms = []
    for probs in maps:
        m = _coverage(masks, probs)  # [B, G, HW]
        a = torch.gather(probs.transpose(1, 2), 1, nouns.clamp(min=0)[:, :, None].expand(-1, -1, probs.shape[1]))
        bce = F.binary_cross_entropy(a.clamp(1e-6, 1 - 1e-6), m, reduction="none").mean(-1)  # [B, G]
        terms.append(bce[valid])
    return torch.cat(terms).mean()
