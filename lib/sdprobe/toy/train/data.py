"""The training data: scenes rendered from seeds (in worker processes), their masks and outline bands, the seed streams and generators of each step, and the toy tokenizer."""

from __future__ import annotations

from collections.abc import Iterator
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sdprobe.images import to_tensor
from sdprobe.paths import MODELS_DIR, REPO_ROOT
from sdprobe.toy.grounding import grounding_targets
from sdprobe.world import caption_corpus, sample_scene
from sdprobe.world.tokenizer import build_tokenizer

WORK = REPO_ROOT / ".toytrain"

OUT = MODELS_DIR / "toy"

TRAIN_SEEDS_FROM = 1_000_000  # held-out evaluation seeds stay below this

VALIDATION_SEEDS_FROM = 600_000  # milestone judgements; the shipped evaluation uses 500,000 on


def _render(seeds: np.ndarray) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray]:
    """Pictures, captions and grounding targets (:func:`~sdprobe.toy.grounding.grounding_targets`)."""
    scenes = [sample_scene(int(s)) for s in seeds]
    targets = [grounding_targets(s) for s in scenes]
    return (np.stack([s.array() for s in scenes]), [s.caption for s in scenes],
            np.stack([t[0] for t in targets]), np.stack([t[1] for t in targets]))


def render_scenes(seeds: np.ndarray, workers: int = 1, chunk: int = 500) -> Iterator[tuple]:
    """Pictures uint8 ``[n, 128, 128, 3]``, captions, grounding masks ``[n, 2, 16, 16]`` and word
    positions ``[n, 2, 2]`` of the scenes of ``seeds``, ``chunk`` at a time and in order, drawn by
    ``workers`` processes (the result does not depend on how many)."""
    parts = [seeds[i:i + chunk] for i in range(0, len(seeds), chunk)]
    if workers <= 1 or len(parts) == 1:
        yield from map(_render, parts)
        return
    with get_context("spawn").Pool(workers) as pool:
        yield from pool.imap(_render, parts)


def scene_batch(seeds: np.ndarray) -> tuple[torch.Tensor, list[str]]:
    """Images ``[B, 3, 128, 128]`` in ``[-1, 1]`` and captions of the scenes of ``seeds``."""
    arrays, captions, _, _ = _render(seeds)
    return to_tensor(arrays), captions


def object_masks(seeds: np.ndarray) -> torch.Tensor:
    """Where the objects of the scenes of ``seeds`` are: float ``[B, 1, 128, 128]``."""
    masks = np.stack([sample_scene(int(s)).masks().any(0) for s in seeds]).astype(np.float32)
    return torch.from_numpy(masks)[:, None]


def outline_band(masks: torch.Tensor, width: int = 2) -> torch.Tensor:
    """Pixels within ``width`` of an object outline, inside or out: float ``[B, 1, H, W]``."""
    k = 2 * width + 1
    grown = F.max_pool2d(masks, k, stride=1, padding=width)
    shrunk = -F.max_pool2d(-masks, k, stride=1, padding=width)
    return grown - shrunk


def seed_stream(start: int, batch: int, step: int) -> np.ndarray:
    """The scene seeds of training step ``step``: fresh scenes every step."""
    base = TRAIN_SEEDS_FROM + start * 10_000_000 + step * batch
    return np.arange(base, base + batch)


def step_generator(seed: int, step: int) -> torch.Generator:
    """The random stream of one training step: a resumed run draws exactly what an
    uninterrupted one would."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def tokenizer(folder: Path = WORK / "tokenizer"):
    """The toy tokenizer: merges learned from 3,000 captions (deterministic), files in ``folder``."""
    return build_tokenizer(caption_corpus(3000), folder)
