"""The attention assignment score: how much of each word's attention falls on its own object."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class AttentionAssignment:
    """Result of :func:`attention_assignment_score`.

    Attributes:
        score: the AAS, in ``[0, 1]``.
        per_pair: ``[n_pairs]`` each pair's overlap averaged over steps.
        per_step: ``[n_pairs, steps]`` the overlaps.
        margin: ``[n_pairs]`` own-noun overlap minus the largest overlap with another noun
            (``[-1, 1]``; negative means the attribute sits on the wrong object). NaN with one pair.
    """

    score: float
    per_pair: torch.Tensor
    per_step: torch.Tensor
    margin: torch.Tensor


def _as_distribution(m: torch.Tensor, name: str) -> torch.Tensor:
    """``[steps, h, w]`` maps → ``[steps, h*w]`` rows summing to 1 (all-zero rows stay zero)."""
    if (m < 0).any() or not torch.isfinite(m).all():
        raise ValueError(f"the attention map of {name!r} must be finite and non-negative")
    flat = m.flatten(1)
    total = flat.sum(dim=1, keepdim=True)
    return torch.where(total > 0, flat / total.clamp_min(1e-30), torch.zeros_like(flat))


def attention_assignment_score(
    pairs: Sequence[tuple[torch.Tensor, torch.Tensor]],
) -> AttentionAssignment:
    """Attention Assignment Score (AAS) — our definition; the draft leaves the formula blank.

    The draft describes AAS as how well the cross-attention of an attribute word agrees with that
    of the object it belongs to during generation. We define, for attribute maps ``A_k`` and noun
    maps ``N_k`` (object ``k``, step ``s``), each normalised to sum to 1 over the cells::

        overlap_k(s) = sum_cells min(A_k(s), N_k(s))          (histogram intersection, in [0, 1])
        AAS          = mean_k mean_s overlap_k(s)

    1 means the attribute's attention lies exactly where its noun's does at every step; 0 means
    they never share a cell. A map that is zero everywhere at a step attends nowhere and scores 0
    there. ``margin`` also reports, per object, the own-noun overlap minus the largest overlap
    with another object's noun: the attribute-binding gap that colour swaps come from.

    Args:
        pairs: ``(attribute_map, noun_map)`` per object, each ``[h, w]`` or ``[steps, h, w]``,
            all of one shape, non-negative (e.g. ``trace.word_heatmap("red", step=i)`` stacked).
    """
    if not pairs:
        raise ValueError("attention_assignment_score needs at least one (attribute, noun) pair of maps")
    maps = []
    for k, pair in enumerate(pairs):
        if len(pair) != 2:
            raise ValueError(f"pair {k} must be (attribute_map, noun_map)")
        for m in pair:
            m = torch.as_tensor(m, dtype=torch.float32)
            maps.append(m[None] if m.dim() == 2 else m)
    shapes = {tuple(m.shape) for m in maps}
    if len(shapes) != 1 or maps[0].dim() != 3:
        raise ValueError(f"all maps must share one [h, w] or [steps, h, w] shape; got {sorted(shapes)}")
    dist = [_as_distribution(m, f"pair {k // 2} {'noun' if k % 2 else 'attribute'}") for k, m in enumerate(maps)]
    attrs, nouns = dist[0::2], dist[1::2]
    cross = torch.stack([torch.stack([torch.minimum(a, n).sum(dim=1) for n in nouns]) for a in attrs])  # [k, k, steps]
    overlap = torch.stack([cross[k, k] for k in range(len(attrs))])  # [k, steps]
    if len(attrs) > 1:
        others = cross.mean(dim=2).clone()
        others.fill_diagonal_(-math.inf)
        margin = overlap.mean(dim=1) - others.max(dim=1).values
    else:
        margin = torch.full((1,), math.nan)
    per_pair = overlap.mean(dim=1)
    return AttentionAssignment(float(per_pair.mean()), per_pair, overlap, margin)


def assignment_pairs(
    heatmap: Callable[..., torch.Tensor],
    objects: Sequence[Any],
    steps: Sequence[int],
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(attribute_maps, noun_maps)`` per object, each ``[steps, h, w]``, for
    :func:`attention_assignment_score`.

    Args:
        heatmap: ``heatmap(word, step=i) -> [h, w]``, e.g. ``trace.word_heatmap`` of
            ``sdprobe.trace_attention``.
        objects: objects with a ``word`` and an ``attribute`` word (``PlacedObject`` of the transplant).
        steps: the denoising steps to compare.
    """
    if not steps:
        raise ValueError("steps is empty: give the denoising steps to compare")
    missing = [o.prompt for o in objects if not o.attribute]
    if missing:
        raise ValueError(f"objects {missing} have no attribute word to compare with their noun")

    def stack(word: str) -> torch.Tensor:
        return torch.stack([torch.as_tensor(heatmap(word, step=i), dtype=torch.float32) for i in steps])

    return [(stack(o.attribute), stack(o.word)) for o in objects]
