"""Similarities between items and pictures: mean pairwise similarity, background MSE, Pearson r."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import torch
from PIL import Image

from sdprobe.analysis.metrics.overlap import _as_mask
from sdprobe.images import to_array


def mean_pairwise_similarity(items: Any, *, pairs: str = "all") -> float:
    """Mean cosine similarity between the items of a sequence ``[N, ...]`` (each flattened).

    ``pairs="all"`` averages over every ``i < j``; ``"consecutive"`` over ``(i, i + 1)``, i.e. along
    the sequence. Needs at least two items; an all-zero item has no direction and is an error.
    """
    if pairs not in {"all", "consecutive"}:
        raise ValueError(f"pairs must be 'all' or 'consecutive', not {pairs!r}")
    x = torch.stack([torch.as_tensor(np.asarray(i), dtype=torch.float64).flatten() for i in items]) \
        if not torch.is_tensor(items) else items.detach().double().flatten(1)
    if x.shape[0] < 2:
        raise ValueError(f"need at least two items to compare, got {x.shape[0]}")
    norms = x.norm(dim=1)
    if (norms == 0).any():
        raise ValueError(f"items {torch.nonzero(norms == 0).flatten().tolist()} are all zero; cosine similarity is undefined")
    x = x / norms[:, None]
    index = itertools.combinations(range(len(x)), 2) if pairs == "all" else zip(range(len(x) - 1), range(1, len(x)))
    sims = [float(x[i] @ x[j]) for i, j in index]
    return float(np.mean(sims))


def _pixels(image: Any, name: str) -> np.ndarray:
    a = np.asarray(to_array(image) if isinstance(image, Image.Image) else image, dtype=np.float64)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3:
        raise ValueError(f"{name} must be [H, W] or [H, W, C] in 0-255 units, got shape {a.shape}")
    return a


def background_mse(image_a: Any, image_b: Any, foreground: Any = None) -> float:
    """Mean squared difference over background pixels, in 0–255 pixel units.

    The mean runs over the background pixels and their channels only (not over the whole image
    with the foreground zeroed, as PIE-Bench does on [0, 1] images); ``foreground`` is a boolean
    ``[H, W]`` mask, ``None`` compares every pixel. PIL images or ``[H, W, C]`` arrays in 0–255.
    """
    a, b = _pixels(image_a, "image_a"), _pixels(image_b, "image_b")
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} and {b.shape}")
    bg = np.ones(a.shape[:2], bool) if foreground is None else ~_as_mask(foreground, "foreground")
    if bg.shape != a.shape[:2]:
        raise ValueError(f"foreground mask {bg.shape} does not match the images {a.shape[:2]}")
    if not bg.any():
        raise ValueError("the foreground mask covers the whole image: there is no background to compare")
    return float(((a - b) ** 2)[bg].mean())


def pearson_r(a: Any, b: Any) -> float:
    """Pearson correlation of two maps of one shape (flattened). NaN if either is constant."""
    x = torch.as_tensor(np.asarray(a), dtype=torch.float64).flatten()
    y = torch.as_tensor(np.asarray(b), dtype=torch.float64).flatten()
    if tuple(np.shape(a)) != tuple(np.shape(b)):
        raise ValueError(f"maps differ in shape: {tuple(np.shape(a))} and {tuple(np.shape(b))}")
    if x.numel() < 2:
        raise ValueError("need at least two values to correlate")
    x, y = x - x.mean(), y - y.mean()
    denom = x.norm() * y.norm()
    return float((x @ y) / denom) if denom > 0 else math.nan
