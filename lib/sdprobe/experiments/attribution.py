"""Chapter 01's measurements: DAAM heat maps against what was drawn, over many seeds.

For each image of a prompt a judge gives the subject's outline (:func:`judge_outline`: on the toy
the world's exact segmentation, the union of the objects of the subject's shape; on a real model
the segmenter's masks of the subject's noun, a proxy for the human masks DAAM scored against),
and three numbers are read against it:

* the **IoU** of the subject word's DAAM mask (threshold ``τ`` on the min–max normalised map,
  at image size) with the outline;
* the **specificity**: the share of the subject map's mass inside the outline minus the same
  share for the other words asked about ("runs", "the"); positive when the subject's map sits on
  the subject more than the other words' maps do;
* the **half-times** of the change inside and outside the outline: after how many steps each
  region has received half of all the change of the predicted clean latent x̂0 (latent cells,
  the outline pooled to the latent grid). "Subject first" means a smaller half-time inside.

Images whose subject the judge cannot find carry ``None`` and are left out of the means; every
number says how many images it rests on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from sdprobe.analysis.change import change_maps, half_times
from sdprobe.analysis.metrics import per_object_iou
from sdprobe.probes.attention import trace_attention
from sdprobe.probes.trajectory import record_trajectory
from sdprobe.progress import progress

__all__ = ["HeatmapRuns", "estimates", "heatmap_runs", "judge_outline", "latent_region", "mass_inside", "subject_word",
           "summary_frame"]


@dataclass
class HeatmapRuns:
    """Per seed of one prompt (``None`` where the subject was not found)."""

    prompt: str
    word: str
    images: list[Image.Image] = field(default_factory=list)
    iou: list[float | None] = field(default_factory=list)
    specificity: list[float | None] = field(default_factory=list)
    half_inside: list[float | None] = field(default_factory=list)
    half_outside: list[float | None] = field(default_factory=list)
    drawn: list[int] = field(default_factory=list)  # objects of the subject's shape found
    covered: list[int] = field(default_factory=list)  # of them touched by the heat mask
    several_asked: bool = False  # the prompt names the subject in the plural ("three dogs")

    @property
    def n(self) -> int:
        return len(self.images)

    def found(self, values: Sequence[float | None]) -> list[float]:
        """``values`` of the images where the subject was found."""
        return [v for v in values if v is not None]

    def leads(self) -> list[float]:
        """Per image with both half-times: outside minus inside (steps; positive = subject first)."""
        return [o - i for i, o in zip(self.half_inside, self.half_outside) if i is not None and o is not None]


def latent_region(mask: np.ndarray, latent: tuple[int, int]) -> np.ndarray:
    """An image-size bool mask pooled to the latent grid: a cell is in when at least half of its
    pixels are. ``[h, w]`` bool"""
    h, w = latent
    H, W = mask.shape
    return mask.reshape(h, H // h, w, W // w).mean(axis=(1, 3)) >= 0.5


def mass_inside(heatmap: torch.Tensor | np.ndarray, region: np.ndarray) -> float:
    """The share of a (non-negative) heat map's total inside ``region`` (same shape)."""
    m = np.clip(np.asarray(heatmap, dtype=np.float64), 0, None)
    total = m.sum()
    return float(m[region].sum() / total) if total > 0 else 0.0


def judge_outline(judge: Any, noun: str) -> Callable[[Image.Image, str], list[np.ndarray]]:
    """``outline(image, word) -> masks`` for :func:`heatmap_runs`: one bool ``[H, W]`` mask per
    instance of ``noun`` the judge (:mod:`sdprobe.analysis.judges`) finds, whatever form of the
    word the prompt uses ("dogs" for "dog")."""
    from sdprobe.analysis.judges import ObjectClause, StructuredPrompt

    def outline(image: Image.Image, word: str) -> list[np.ndarray]:
        reading = judge.read([image], [StructuredPrompt(word, (ObjectClause(noun),))])[0]
        return [f.mask for f in reading.found[0]]

    return outline


def subject_word(words: Sequence[str], subject: str) -> str:
    """The first of a trace's ``words`` that starts with ``subject`` ("dog" finds "dogs").

    Raises:
        ValueError: no word does (the message lists the words).
    """
    found = [w for w in words if w.lower().startswith(subject.lower())]
    if not found:
        raise ValueError(f"no word of the prompt starts with {subject!r}; its words: {list(words)}")
    return found[0]


@torch.no_grad()
def heatmap_runs(pipe: Any, prompt: str, subject: str, outline: Callable[[Image.Image, str], list[np.ndarray]], *,
                 seeds: int, seed: int = 0, steps: int = 20, guidance: float = 7.5, batch: int = 16,
                 threshold: float = 0.4, others: Sequence[str] = ("runs", "the"), height: int | None = None,
                 width: int | None = None) -> HeatmapRuns:
    """Draw ``prompt`` from ``seeds`` seeds (image ``i`` from ``seed + i``), trace DAAM and the
    trajectory, and read every image against the subject's true outline.

    Args:
        subject: the subject word's beginning ("dog" finds "dogs").
        outline: ``outline(image, word) -> masks``, one bool ``[H, W]`` mask per object of the
            word's shape found in the image (the toy world's segmentation).
        others: words whose maps the subject's is compared with; those not in the prompt are
            skipped.
    """
    runs: HeatmapRuns | None = None
    for start in progress(range(0, seeds, batch), desc=f"heat maps: {prompt}"):
        count = min(batch, seeds - start)
        gens = [torch.Generator("cpu").manual_seed(seed + start + k) for k in range(count)]
        with trace_attention(pipe, keep_steps=False) as trace, record_trajectory(pipe) as traj:
            images = pipe([prompt] * count, num_inference_steps=steps, guidance_scale=guidance, generator=gens,
                          height=height, width=width).images
        words = trace.words()
        if runs is None:
            word = subject_word(words, subject)
            runs = HeatmapRuns(prompt, word, several_asked=word.lower() != subject.lower())
        compared = [w for w in others if w in words and w != runs.word]
        x0 = torch.stack(traj.x0)  # [steps, B, 4, h, w]
        for i, image in enumerate(images):
            _read(runs, trace, x0[:, i].numpy(), i, image, outline(image, runs.word), compared, threshold)
    return runs


def _read(runs: HeatmapRuns, trace: Any, x0: np.ndarray, i: int, image: Image.Image, objects: list[np.ndarray],
          compared: Sequence[str], threshold: float) -> None:
    """Score image ``i`` of a traced batch into ``runs``."""
    mask = trace.word_mask(runs.word, threshold, image=i).numpy()
    runs.images.append(image)
    runs.drawn.append(len(objects))
    runs.covered.append(sum(bool((o & mask).any()) for o in objects))
    if not objects:
        for values in (runs.iou, runs.specificity, runs.half_inside, runs.half_outside):
            values.append(None)
        return
    truth = np.any(objects, axis=0)
    runs.iou.append(per_object_iou(mask, objects))  # dog by dog when several are drawn
    latent = latent_region(truth, tuple(x0.shape[-2:]))
    share = mass_inside(trace.word_heatmap(runs.word, image=i), latent)
    rest = [mass_inside(trace.word_heatmap(w, image=i), latent) for w in compared]
    runs.specificity.append(share - float(np.mean(rest)) if rest else None)
    if 0 < latent.mean() < 1:
        inside, outside = half_times(change_maps(x0, channel_axis=1), latent)
        runs.half_inside.append(inside)
        runs.half_outside.append(outside)
    else:
        runs.half_inside.append(None)
        runs.half_outside.append(None)


def estimates(runs: HeatmapRuns) -> dict[str, dict]:
    """The chapter's numbers for one prompt, each ``{"mean", "ci", "n"}`` (bootstrap over images;
    ``None`` with fewer than two images): ``iou``, ``specificity``, ``lead`` (with ``"p"``, an
    exact sign test; ``leads`` counts the images with one), and ``several``: for a prompt naming
    the subject in the plural, the share of images with at least two subject objects in which the
    mask touches every one (exact binomial interval). ``iou`` is per object
    (:func:`~sdprobe.analysis.metrics.per_object_iou`)."""
    from sdprobe.analysis.stats import mean_ci, rate, sign_test

    def mean_of(values: list[float]) -> dict | None:
        return mean_ci(values) if len(values) >= 2 else None

    out: dict[str, Any] = {"images": runs.n, "found": sum(d > 0 for d in runs.drawn), "leads": len(runs.leads()),
                           "iou": mean_of(runs.found(runs.iou)), "specificity": mean_of(runs.found(runs.specificity))}
    leads = runs.leads()
    out["lead"] = mean_of(leads)
    if out["lead"] is not None:
        out["lead"]["p"] = sign_test(leads)
    # only where the prompt asks for several: a stray second dog under "a dog" is no test of it
    several = [c == d for c, d in zip(runs.covered, runs.drawn) if d >= 2] if runs.several_asked else []
    out["several"] = None
    if several:
        r = rate(several)
        out["several"] = {"mean": r["rate"], "ci": r["ci"], "n": r["n"]}
    return out


def summary_frame(results: dict[str, dict[str, Any]]):
    """One row per prompt: images, subject found, and each estimate with its 95 % interval."""
    import pandas as pd

    from sdprobe.formatting import BLANK, format_estimate

    def cell(e: dict | None, pct: bool = False, signed: bool = False) -> str:
        if e is None:
            return BLANK
        return f"{format_estimate(e['mean'], '%' if pct else '', e['ci'], signed=signed)}; n = {e['n']}"

    rows = {prompt: {"images": e["images"], "subject found": e["found"], "IoU per object": cell(e["iou"]),
                     "specificity": cell(e["specificity"], signed=True),
                     "lead of the subject (steps)": cell(e["lead"], signed=True),
                     "every object under the mask": cell(e["several"], pct=True)} for prompt, e in results.items()}
    return pd.DataFrame(rows).T
