"""Milestone samples: a few fixed prompts drawn at each milestone, for the training log."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

SAMPLE_PROMPTS = ("a red circle on the field", "three blue squares in the snow",
                  "a white dog runs across the field", "a yellow star and a purple triangle")


@torch.no_grad()
def _milestone_samples(work: Path, step: int, pipe, steps: int = 20) -> None:
    """Draw the sample prompts with the weights of this step (the chapter shows them over training)."""
    from PIL import Image

    images = pipe(list(SAMPLE_PROMPTS), num_inference_steps=steps,
                  generator=[torch.Generator().manual_seed(k) for k in range(len(SAMPLE_PROMPTS))]).images
    (work / "samples").mkdir(exist_ok=True)
    Image.fromarray(np.concatenate([np.asarray(im) for im in images], axis=1)).save(work / "samples" / f"step{step:05d}.png")
