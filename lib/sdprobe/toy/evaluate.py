"""Judge generated toy-world images with the world's own segmentation.

For a prompt such as ``"a red square and a white dog on the field"`` the judge parses what was
asked (:func:`~sdprobe.world.parse_prompt`), finds the palette-coloured objects in the image
(:func:`~sdprobe.world.segment`), decides object by object whether it is there and in which
colour, and names the background (:func:`~sdprobe.world.background_of`). Prompts come from
held-out scene seeds (below the training seeds). From the shell::

    python -m sdprobe.toy.evaluate --images 128     # writes data/models/toy/evaluation.json

The model card's gates and targets (:data:`GATES`, :data:`TARGETS`) hold when the measured value
(not the lower end of its interval) reaches the bar; the intervals are reported beside it.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from sdprobe.probes.attention import trace_attention
from sdprobe.analysis.heatmaps import DEFAULT_THRESHOLD
from sdprobe.analysis.metrics import ImageJudgement, mask_iou
from sdprobe.progress import progress
from sdprobe.analysis.stats import bootstrap_ci, rate
from sdprobe.world import EVAL_SEEDS_FROM, Detection, Scene, background_of, parse_prompt, sample_scene, segment

__all__ = ["GATES", "KINDS", "TARGETS", "Verdict", "bars_met", "evaluate", "evaluation_prompts",
           "evaluation_scenes", "generate", "judge", "judge_images", "measured", "vae_roundtrip"]



@dataclass(frozen=True)
class Verdict:
    """What the judge saw for one image: per requested object whether it is present (any colour)
    and the colour it shows; ``counts`` holds the number found of each requested object in its
    asked colour; ``background`` is the one the prompt names (``None`` if none) and
    ``background_seen`` the one the judge sees."""

    prompt: str
    judgement: ImageJudgement
    counts: tuple[int, ...]
    requested_counts: tuple[int, ...]
    background: str | None = None
    background_seen: str | None = None

    @property
    def correct(self) -> bool:
        """Every object present in its own colour, with the asked count (the background aside)."""
        j = self.judgement
        return all(j.present) and all(s == r for s, r in zip(j.seen, j.requested)) and self.counts == self.requested_counts

    @property
    def background_correct(self) -> bool | None:
        """Whether the background is the one the prompt names; ``None`` when it names none."""
        return None if self.background is None else self.background_seen == self.background


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
    return Verdict(prompt, ImageJudgement(tuple(requested), tuple(present), tuple(seen)), tuple(counts), tuple(asked),
                   spec.background, background_of(image) if spec.background else None)


def _colour_of(detections: Sequence[Detection], wanted: str | None) -> str | None:
    if not detections:
        return None
    if wanted is not None and any(d.colour == wanted for d in detections):
        return wanted
    return max(detections, key=lambda d: d.area).colour


KINDS = ("single", "pair", "count")

#: The model card's gates, what the toy model must reach. In order, the VAE round trip judged correct,
#: one object in its shape and colour, the background the prompt names, and the mean IoU of the
#: object word's heat map with the object (one-object prompts).
GATES: dict[str, float] = {"vae": 0.97, "single": 0.9, "background": 0.9, "heatmap_iou": 0.5}
#: The targets beyond the gates. Both objects of a pair in their colours (Stable Diffusion 2.1
#: scores about 0.5 on GenEval's two-object task) and counts of two and three.
TARGETS: dict[str, float] = {"pair": 0.4, "count": 0.4}


def measured(evaluation: dict, name: str) -> float:
    """The value of gate or target ``name`` in a result of :func:`evaluate`."""
    if name == "vae":
        return evaluation["vae"]["correct"]
    if name == "background":
        return evaluation["background"]["correct"]
    if name == "heatmap_iou":
        return evaluation["kinds"]["single"]["heatmap_iou"]
    return evaluation["kinds"][name]["correct"]


def bars_met(evaluation: dict) -> dict[str, bool]:
    """For each gate and target, whether the measured value reaches its bar."""
    return {name: measured(evaluation, name) >= bar for name, bar in {**GATES, **TARGETS}.items()}


def evaluation_scenes(kind: str, n: int) -> list[Scene]:
    """``n`` held-out scenes of one scene kind (``single``, ``pair``, ``count``)."""
    return [sample_scene(EVAL_SEEDS_FROM + i, kind=kind) for i in range(n)]


def evaluation_prompts(kind: str, n: int) -> list[str]:
    """The captions of :func:`evaluation_scenes`."""
    return [s.caption for s in evaluation_scenes(kind, n)]


def generate(pipe, prompts: Sequence[str], *, steps: int = 20, guidance: float = 7.5, seed: int = 0, batch: int = 16,
             trace: bool = False, desc: str | None = None):
    """Draw ``prompts`` in batches, image ``i`` from the generator seeded ``seed + i``.

    Yields ``(first index, images, trace)`` per batch; ``trace`` is the batch's
    :class:`~sdprobe.probes.attention.AttentionTrace` (``trace=True``) or ``None``.
    """
    starts = range(0, len(prompts), batch)
    for i in (progress(starts, desc=desc) if desc else starts):
        chunk = list(prompts[i:i + batch])
        gen = [torch.Generator().manual_seed(seed + i + k) for k in range(len(chunk))]
        if trace:
            with trace_attention(pipe, keep_steps=False) as traced:
                images = pipe(chunk, num_inference_steps=steps, guidance_scale=guidance, generator=gen).images
            yield i, images, traced
        else:
            yield i, pipe(chunk, num_inference_steps=steps, guidance_scale=guidance, generator=gen).images, None


@torch.no_grad()
def judge_images(pipe, prompts: Sequence[str], **options) -> list[Verdict]:
    """Generate ``prompts`` (options as :func:`generate`) and judge every image."""
    return [judge(im, prompts[i + k]) for i, images, _ in generate(pipe, prompts, **options)
            for k, im in enumerate(images)]


@torch.no_grad()
def evaluate(pipe, n: int = 128, *, steps: int = 20, guidance: float = 7.5, seed: int = 0, batch: int = 16,
             threshold: float = DEFAULT_THRESHOLD) -> dict:
    """The quality table: per scene kind, the share of correct images and the failure rates, each
    with its 95 % interval (exact binomial for rates, bootstrap for the mean IoU).

    Returns a JSON-ready dict with, for every kind: correct, and present (every asked shape
    drawn, in any colour and number); for ``single``: the heat-map IoU (the object word's
    DAAM mask at ``threshold`` against the object the judge found, over images where it found one);
    ``pair``: correct, missing-object and colour-swap rates; ``count``: correct (the asked number
    of the right objects); ``background``: the share of images, over all prompts that name one,
    showing that background; ``vae``: the round trip (:func:`vae_roundtrip`). Images come from the
    pipeline's own scheduler.
    """
    table, backgrounds = {}, []
    for kind in KINDS:
        prompts = evaluation_prompts(kind, n)
        verdicts, ious = [], []
        for i, images, trace in generate(pipe, prompts, steps=steps, guidance=guidance, seed=seed, batch=batch,
                                         trace=kind == "single", desc=f"evaluate {kind}"):
            verdicts += [judge(im, prompts[i + k]) for k, im in enumerate(images)]
            if trace is not None:  # heat maps are scored on one-object prompts only
                ious += [_heatmap_iou(trace, k, im, prompts[i + k], threshold) for k, im in enumerate(images)]
        backgrounds += [v.background_correct for v in verdicts if v.background_correct is not None]
        correct = rate([v.correct for v in verdicts])
        present = rate([all(v.judgement.present) for v in verdicts])  # every asked shape, any colour
        row = {"images": n, "correct": correct["rate"], "correct_ci": correct["ci"],
               "present": present["rate"], "present_ci": present["ci"]}
        if kind == "single":
            found = [v for v in ious if v is not None]
            row |= {"heatmap_iou": float(np.mean(found)) if found else 0.0,
                    "heatmap_iou_ci": list(bootstrap_ci(found)) if len(found) > 1 else None,
                    "heatmap_iou_at_least_0.5": float(np.mean([v >= 0.5 for v in found])) if found else 0.0,
                    "heatmap_images": len(found), "heatmap_threshold": threshold}
        if kind == "pair":
            missing = rate([v.judgement.missing for v in verdicts])
            complete = [v.judgement for v in verdicts if not v.judgement.missing]
            swapped = rate([j.swapped for j in complete])
            row |= {"missing_object_rate": missing["rate"], "missing_object_ci": missing["ci"],
                    "colour_swap_rate": swapped["rate"] if complete else None,
                    "colour_swap_ci": swapped["ci"], "complete_images": len(complete)}
        table[kind] = row
    background = rate(backgrounds)
    scheduler = type(pipe.scheduler).__name__
    return {"steps": steps, "guidance": guidance, "seed": seed, "scheduler": scheduler, "kinds": table,
            "background": {"images": background["n"], "correct": background["rate"], "correct_ci": background["ci"]},
            "vae": vae_roundtrip(pipe, n, batch=batch)}


@torch.no_grad()
def vae_roundtrip(pipe, n: int = 128, *, batch: int = 16) -> dict:
    """How much of a scene survives the VAE alone: encode and decode ``n`` held-out scenes of
    every kind and judge the reconstructions against their captions (an upper bound for what the
    U-Net can be judged to draw)."""
    from sdprobe.models.latents import decode_latents, encode_images

    scenes = [scene for kind in KINDS for scene in evaluation_scenes(kind, n)]
    verdicts = []
    for i in range(0, len(scenes), batch):
        chunk = scenes[i:i + batch]
        recons = decode_latents(pipe, encode_images(pipe, [s.image() for s in chunk]))
        verdicts += [judge(r, s.caption) for r, s in zip(recons, chunk)]
    result = rate([v.correct and v.background_correct is not False for v in verdicts])
    return {"images": len(scenes), "correct": result["rate"], "correct_ci": result["ci"]}


def _heatmap_iou(trace, image: int, picture: Image.Image, prompt: str, threshold: float) -> float | None:
    """IoU of the shape word's heat-map mask with the largest object of that shape the judge
    finds in the image; ``None`` when it finds none."""
    shape = parse_prompt(prompt).groups[0][1]
    found = [d for d in segment(picture) if d.shape == shape]
    if not found:
        return None
    heat = trace.word_mask(shape, threshold, image=image)
    return mask_iou(heat.numpy(), max(found, key=lambda d: d.area).mask)


def open_prompts() -> list[str]:
    """Sixteen prompts that leave colour and background open ("a star", "two dogs", …): what the
    seed is free to change, for measuring variety."""
    from sdprobe.world import PLURALS, SHAPES

    return ([f"a {s}" for s in SHAPES] + [f"two {PLURALS[s]}" for s in SHAPES]
            + [f"three {PLURALS[s]}" for s in SHAPES] + ["a dog runs across the field"])


def outlines(image: Image.Image | np.ndarray, word: str) -> list[np.ndarray]:
    """The true outlines (bool ``[H, W]`` masks) of every object of ``word``'s shape ("dog",
    "dogs", "red star") the world's segmentation finds in ``image``."""
    shape = parse_prompt(word).groups[0][1]
    return [d.mask for d in segment(image) if d.shape == shape]


def main(argv: list[str] | None = None) -> int:
    from sdprobe.models import load_pipeline
    from sdprobe.paths import MODELS_DIR

    parser = argparse.ArgumentParser(prog="python -m sdprobe.toy.evaluate")
    parser.add_argument("--images", type=int, default=128, help="images per scene kind")
    parser.add_argument("--steps", type=int, default=20, help="DPM-Solver++ steps")
    parser.add_argument("--model", default="toy")
    parser.add_argument("--out", default=None, help="where to write the JSON (default: the toy's evaluation.json)")
    args = parser.parse_args(argv)
    if args.images < 2 or args.steps < 1:
        parser.error(f"--images must be at least 2 and --steps at least 1, not {args.images} and {args.steps}")
    result = evaluate(load_pipeline(args.model, device="cpu", scheduler="dpm"), args.images, steps=args.steps)
    text = json.dumps(result, indent=1) + "\n"
    print(text, end="")
    out = args.out or (MODELS_DIR / "toy" / "evaluation.json" if args.model == "toy" else None)
    if out is not None:
        tmp = f"{out}.tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
