"""Chapter 03's Table 1: TAUE's seedling transplant against plain generation, over many images.

Every condition draws ``images_per_prompt`` images per layout prompt from the same seeds
(image ``i`` of a prompt from ``seed + i`` in every condition), so conditions are paired by
(prompt, image) and compared with paired tests. A judge (:mod:`sdprobe.analysis.judges`) reads
every image once: where each asked object is (for the IoU with its box), whether it is there, and
in which colour (for the missing-object and colour-swap rates).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from sdprobe.analysis.judges import ObjectClause, StructuredPrompt
from sdprobe.analysis.metrics import ImageJudgement, assignment_pairs, attention_assignment_score, box_iou, clip_score
from sdprobe.analysis.stats import mcnemar, mean_ci, paired_difference, rate, sign_test
from sdprobe.probes.attention import trace_attention
from sdprobe.probes.transplant import make_seedlings, transplant_seedlings
from sdprobe.progress import progress

__all__ = ["PLAIN", "ConditionRuns", "condition_name", "layout_prompt", "missing_object_difference", "paired_gain",
           "placed_iou", "run_table1", "table1_frame", "table1_summary"]

#: The condition without a transplant.
PLAIN = None


def condition_name(t_transplant: int | None) -> str:
    """``"TAUE (t_transplant = 6)"`` or ``"plain generation"``."""
    return "plain generation" if t_transplant is None else f"TAUE (t_transplant = {t_transplant})"


@dataclass
class ConditionRuns:
    """Per image of one condition, in (prompt, image) order: IoU with the boxes (mean over
    objects), CLIP score, AAS and its margin, and the judge's reading."""

    iou: list[float] = field(default_factory=list)
    clip: list[float] = field(default_factory=list)
    aas: list[float] = field(default_factory=list)
    margin: list[float] = field(default_factory=list)
    judged: list[ImageJudgement] = field(default_factory=list)
    examples: list[Image.Image] = field(default_factory=list)  # the first image of each prompt

    @property
    def n(self) -> int:
        return len(self.iou)


def layout_prompt(layout: Any) -> StructuredPrompt:
    """What a layout prompt asks for: each placed object's noun in its colour, in order."""
    return StructuredPrompt(layout.prompt, tuple(ObjectClause(o.word, o.attribute or None) for o in layout.objects))


def placed_iou(reading: Any, layout: Any) -> float:
    """The IoU of each requested box with the instance of its object the judge found that fits it
    best (0 for a missing object), averaged over the layout's objects, in pixels."""
    width, height = reading.size[1], reading.size[0]
    return float(np.mean([max((box_iou(o.box.to_pixels(width, height), f.box) for f in found), default=0.0)
                          for o, found in zip(layout.objects, reading.found)]))


def _generate(pipe: Any, layout: Any, t_transplant: int | None, seedlings: Any, n: int, seed: int, *, steps: int,
              guidance: float, with_aas: bool) -> tuple[list[Image.Image], list[Any]]:
    """``n`` images of one condition from ``seed``, each with its attention assignment (an empty
    list without ``with_aas``)."""
    with trace_attention(pipe) if with_aas else nullcontext() as trace:
        if t_transplant is None:
            images = pipe(layout.prompt, num_images_per_prompt=n, num_inference_steps=steps, guidance_scale=guidance,
                          generator=torch.Generator("cpu").manual_seed(seed)).images
            first = 0
        else:
            images = transplant_seedlings(pipe, seedlings, prompt=layout.prompt, background_prompt=layout.background,
                                          t_transplant=t_transplant, num_images=n, seed=seed).images
            first = t_transplant
    if not with_aas:
        return images, []
    steps_seen = range(first, trace.num_steps)
    aas = [attention_assignment_score(assignment_pairs(
        lambda word, step, i=i: trace.word_heatmap(word, image=i, step=step), layout.objects, steps_seen))
        for i in range(len(images))]
    return images, aas


@torch.no_grad()
def run_table1(pipe: Any, layouts: Sequence[Any], conditions: Sequence[int | None], *, images_per_prompt: int,
               batch_size: int, steps: int, guidance: float, seed: int, t_crop: int, shift_target: float, sigma: float,
               clip: tuple[Any, Any], judge: Any, aas_images: int | None = None) -> dict[str, ConditionRuns]:
    """Draw and score every condition of Table 1.

    Args:
        layouts: layout prompts (:func:`~sdprobe.probes.transplant.load_layout_prompts`).
        conditions: ``t_transplant`` values, :data:`PLAIN` for plain generation.
        clip: ``(model, processor)`` for the CLIP score.
        judge: a :mod:`~sdprobe.analysis.judges` judge: where each object is, whether, in which colour.
        aas_images: trace attention (for AAS) for the first this many images of each prompt,
            drawn in calls of their own (``None``: all). Tracing every step's maps is the slow
            part. Every condition splits its images into the same calls, so pairs stay paired.

    Returns:
        condition name → its :class:`ConditionRuns`.
    """
    runs = {condition_name(c): ConditionRuns() for c in conditions}
    for layout in progress(layouts, desc="Table 1"):
        asked = layout_prompt(layout)
        seedlings = make_seedlings(pipe, layout.objects, t_crop=t_crop, num_inference_steps=steps,
                                   guidance_scale=guidance, target=shift_target, sigma=sigma, seed=seed)
        for c in conditions:
            out = runs[condition_name(c)]
            for offset, n, with_aas in _batches(images_per_prompt, batch_size, aas_images):
                images, aas = _generate(pipe, layout, c, seedlings, n, seed + offset, steps=steps, guidance=guidance,
                                        with_aas=with_aas)
                readings = judge.read(images, [asked] * len(images))
                out.iou += [placed_iou(r, layout) for r in readings]
                out.clip += clip_score(clip[0], images, layout.prompt, processor=clip[1]).tolist()
                out.aas += [a.score for a in aas]
                out.margin += [float(a.margin.mean()) for a in aas]
                out.judged += [r.judgement for r in readings]
                if offset == 0:
                    out.examples.append(images[0])
    return runs


def _batches(total: int, size: int, traced: int | None) -> list[tuple[int, int, bool]]:
    """``(first image, count, traced)`` per pipeline call: the first ``traced`` images in calls
    of their own (``None``: all traced), the rest in calls of ``size``."""
    traced = total if traced is None else min(traced, total)
    out = [(i, min(size, traced - i), True) for i in range(0, traced, size)]
    return out + [(i, min(size, total - i), False) for i in range(traced, total, size)]


def table1_summary(runs: dict[str, ConditionRuns]) -> list[dict[str, Any]]:
    """One record per condition: each measure's estimate and 95 % interval (bootstrap for means,
    exact binomial for rates; the colour-swap rate among images with both objects)."""
    records = []
    for name, r in runs.items():
        rec: dict[str, Any] = {"condition": name, "images": r.n}
        for key, values in (("IoU", r.iou), ("CLIP score", r.clip), ("AAS", r.aas), ("AAS margin", r.margin)):
            if len(values) > 1:
                m = mean_ci(values)
                rec[key] = (m["mean"], m["ci"])
            elif values:  # one image: a value without an interval
                rec[key] = (float(values[0]), None)
        if r.judged:
            both = rate([not j.missing for j in r.judged])
            missing = rate([j.missing for j in r.judged])
            complete = [j for j in r.judged if not j.missing]
            rec["both objects present"] = (both["rate"], both["ci"])
            rec["missing-object rate"] = (missing["rate"], missing["ci"])
            if complete:
                swapped = rate([j.swapped for j in complete])
                rec["colour-swap rate"] = (swapped["rate"], swapped["ci"])
        records.append(rec)
    return records


def missing_object_difference(runs: dict[str, ConditionRuns], transplant: str, plain: str = "plain generation") -> dict:
    """The missing-object rate of ``plain`` minus that of ``transplant``, paired by (prompt,
    image): ``{"mean", "ci", "n", "p"}`` (bootstrap interval over pairs, exact McNemar test).
    Positive: the transplant loses fewer objects."""
    a = [j.missing for j in runs[transplant].judged]
    b = [j.missing for j in runs[plain].judged]
    if not a or len(a) != len(b):
        raise ValueError("both conditions need judged images, equally many")
    diff = paired_difference(a, b)
    return diff | {"p": mcnemar(a, b)}


def paired_gain(runs: dict[str, ConditionRuns], measure: str, transplant: str, plain: str = "plain generation") -> dict:
    """``measure`` (``"iou"``, ``"clip"``, ``"aas"``, ``"margin"``) of ``transplant`` minus that of
    ``plain``, paired by (prompt, image): ``{"mean", "ci", "n", "p"}`` (bootstrap interval over
    pairs, exact sign test)."""
    a, b = getattr(runs[plain], measure), getattr(runs[transplant], measure)
    if len(a) != len(b) or len(a) < 2:
        raise ValueError(f"{measure}: both conditions need the same images, at least two ({len(a)} and {len(b)})")
    return paired_difference(a, b) | {"p": sign_test(np.asarray(b) - np.asarray(a))}


def table1_frame(summary: list[dict[str, Any]], paper: dict[str, Any] | None = None):
    """Table 1 for reading: one row per measure, one column per condition, each cell the estimate
    with its 95 % interval; rates in %. ``paper`` (the reference file's ``table1``) adds the
    draft's columns beside ours."""
    import pandas as pd

    from sdprobe.formatting import BLANK, format_estimate

    measures = ["both objects present", "missing-object rate", "colour-swap rate", "IoU", "CLIP score", "AAS",
                "AAS margin"]
    cols: dict[str, dict[str, str]] = {}
    for rec in summary:
        cells = {}
        for m in measures:
            if m not in rec:
                cells[m] = BLANK
                continue
            value, ci = rec[m]
            cells[m] = format_estimate(value, "%" if m.endswith("rate") or m == "both objects present" else "", ci)
        cells["images"] = str(rec["images"])
        cols[rec["condition"]] = cells
    frame = pd.DataFrame(cols)
    if paper:
        drafted = {m: sorted({v[paper["columns"].index(m)] for v in paper["rows"].values()}) for m in paper["columns"]}
        rows = len(paper["rows"])
        frame[f"the draft's Table 1 ({rows} rows)"] = [
            ("; ".join(f"{v:.3f}" for v in drafted[m]) + (f" in all {rows}" if len(drafted[m]) == 1 else ""))
            if m in drafted else BLANK for m in frame.index]
    return frame
