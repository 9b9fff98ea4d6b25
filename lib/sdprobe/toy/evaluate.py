"""Judge generated toy-world images with the world's own segmentation.

For a prompt such as ``"a red square and a white dog"`` the judge parses what was asked
(:func:`~sdprobe.toy.world.parse_prompt`), finds the palette-coloured objects in the image
(:func:`~sdprobe.toy.world.segment`) and decides, object by object, whether it is there and in
which colour. Prompts come from held-out scene seeds (below the training seeds).

    python -m sdprobe.toy.evaluate --images 40      # writes data/models/toy/evaluation.json
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from ..attention import trace_attention
from ..heatmaps import DEFAULT_THRESHOLD
from ..metrics import ImageJudgement, colour_swap_rate, mask_iou, missing_object_rate
from ..progress import progress
from .world import Detection, Scene, parse_prompt, sample_scene, segment

__all__ = ["EVAL_SEEDS_FROM", "KINDS", "TARGETS", "Verdict", "evaluate", "evaluation_prompts", "evaluation_scenes",
           "judge", "targets_met", "vae_roundtrip"]

EVAL_SEEDS_FROM = 500_000  # training draws scenes from seed 1,000,000 on


@dataclass(frozen=True)
class Verdict:
    """What the judge saw for one image: per requested object whether it is present (any colour)
    and the colour it shows; ``counts`` holds the number found of each requested object."""

    prompt: str
    judgement: ImageJudgement
    counts: tuple[int, ...]
    requested_counts: tuple[int, ...]

    @property
    def correct(self) -> bool:
        """Every object present in its own colour, with the asked count."""
        j = self.judgement
        return all(j.present) and all(s == r for s, r in zip(j.seen, j.requested)) and self.counts == self.requested_counts


def judge(image: Image.Image | np.ndarray, prompt: str) -> Verdict:
    """Judge one generated image against its toy-world prompt."""
    spec = parse_prompt(prompt)
    found = segment(image)
    present, seen, counts, requested, asked = [], [], [], [], []
    for colour, shape, count in spec.groups:
        same_shape = [d for d in found if d.shape == shape]
        right = [d for d in same_shape if colour is None or d.colour == colour]
        present.append(bool(same_shape))
        seen.append(_colour_of(right or same_shape, colour))
        counts.append(len(right))
        requested.append(colour or (seen[-1] or "any"))
        asked.append(count)
    return Verdict(prompt, ImageJudgement(tuple(requested), tuple(present), tuple(seen)), tuple(counts), tuple(asked))


def _colour_of(detections: Sequence[Detection], wanted: str | None) -> str | None:
    if not detections:
        return None
    if wanted is not None and any(d.colour == wanted for d in detections):
        return wanted
    return max(detections, key=lambda d: d.area).colour


KINDS = ("single", "pair", "count")

#: The quality the book asks of its toy model: the share of correct images per scene kind, and
#: the mean IoU of the object word's heat map with the object (one-object prompts).
TARGETS: dict[str, float] = {"single": 0.9, "pair": 0.5, "count": 0.5, "heatmap_iou": 0.5}


def evaluation_scenes(kind: str, n: int) -> list[Scene]:
    """``n`` held-out scenes of one scene kind (``single``, ``pair``, ``count``)."""
    return [sample_scene(EVAL_SEEDS_FROM + i, kind=kind) for i in range(n)]


def evaluation_prompts(kind: str, n: int) -> list[str]:
    """The captions of :func:`evaluation_scenes`."""
    return [s.caption for s in evaluation_scenes(kind, n)]


def targets_met(evaluation: dict) -> dict[str, bool]:
    """For each of :data:`TARGETS`, whether the result of :func:`evaluate` reaches it."""
    kinds = evaluation["kinds"]
    return {name: (kinds["single"]["heatmap_iou"] if name == "heatmap_iou" else kinds[name]["correct"]) >= bar
            for name, bar in TARGETS.items()}


@torch.no_grad()
def evaluate(pipe, n: int = 40, *, steps: int = 30, guidance: float = 7.5, seed: int = 0, batch: int = 8,
             threshold: float = DEFAULT_THRESHOLD) -> dict:
    """The quality table: per scene kind, the share of correct images and the failure rates.

    Returns a JSON-ready dict with, for ``single``: correct, and the heat-map IoU (the object word's
    DAAM mask at ``threshold`` against the object the judge found, over images where it found one);
    ``pair``: correct, missing-object and colour-swap rates; ``count``: correct (the asked number
    of the right objects).
    """
    table = {}
    for kind in KINDS:
        prompts = evaluation_prompts(kind, n)
        verdicts, ious = [], []
        for i in progress(range(0, n, batch), desc=f"evaluate {kind}"):
            chunk = prompts[i:i + batch]
            gen = [torch.Generator().manual_seed(seed + i + k) for k in range(len(chunk))]
            # Heat maps are scored on one-object prompts only; the other kinds run untraced.
            with (trace_attention(pipe, keep_steps=False) if kind == "single" else nullcontext()) as trace:
                images = pipe(chunk, num_inference_steps=steps, guidance_scale=guidance, generator=gen).images
            verdicts += [judge(im, p) for im, p in zip(images, chunk)]
            if kind == "single":
                ious += [_heatmap_iou(trace, k, im, p, threshold) for k, (im, p) in enumerate(zip(images, chunk))]
        row = {"images": n, "correct": float(np.mean([v.correct for v in verdicts]))}
        if kind == "single":
            found = [v for v in ious if v is not None]
            row |= {"heatmap_iou": float(np.mean(found)) if found else float("nan"),
                    "heatmap_iou_at_least_0.5": float(np.mean([v >= 0.5 for v in found])) if found else float("nan"),
                    "heatmap_images": len(found), "heatmap_threshold": threshold}
        if kind == "pair":
            judgements = [v.judgement for v in verdicts]
            row["missing_object_rate"] = missing_object_rate(judgements)
            row["colour_swap_rate"] = colour_swap_rate(judgements)
        table[kind] = row
    return {"steps": steps, "guidance": guidance, "seed": seed, "kinds": table, "vae": vae_roundtrip(pipe, n, batch=batch)}


@torch.no_grad()
def vae_roundtrip(pipe, n: int = 40, *, batch: int = 8) -> dict:
    """How much of a scene survives the VAE alone: encode and decode ``n`` held-out scenes of
    every kind and judge the reconstructions against their captions (an upper bound for what the
    U-Net can be judged to draw)."""
    from ..latents import decode_latents, encode_images

    scenes = [scene for kind in KINDS for scene in evaluation_scenes(kind, n)]
    verdicts = []
    for i in range(0, len(scenes), batch):
        chunk = scenes[i:i + batch]
        recons = decode_latents(pipe, encode_images(pipe, [s.image() for s in chunk]))
        verdicts += [judge(r, s.caption) for r, s in zip(recons, chunk)]
    return {"images": len(scenes), "correct": float(np.mean([v.correct for v in verdicts]))}


def _heatmap_iou(trace, image: int, picture: Image.Image, prompt: str, threshold: float) -> float | None:
    """IoU of the shape word's heat-map mask with the largest object of that shape the judge
    finds in the image; ``None`` when it finds none."""
    shape = parse_prompt(prompt).groups[0][1]
    found = [d for d in segment(picture) if d.shape == shape]
    if not found:
        return None
    heat = trace.word_mask(shape, threshold, image=image)
    return mask_iou(heat.numpy(), max(found, key=lambda d: d.area).mask)


def main(argv: list[str] | None = None) -> int:
    from ..models import load_pipeline
    from ..paths import MODELS_DIR

    parser = argparse.ArgumentParser(prog="python -m sdprobe.toy.evaluate")
    parser.add_argument("--images", type=int, default=40, help="images per scene kind")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--model", default="toy")
    args = parser.parse_args(argv)
    result = evaluate(load_pipeline(args.model, device="cpu"), args.images, steps=args.steps)
    print(json.dumps(result, indent=1))
    if args.model == "toy":
        (MODELS_DIR / "toy" / "evaluation.json").write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
