"""How far to trust a judge: the open-vocabulary protocol's colour step against the toy world's truth.

GenEval reads an object's colour with CLIP on its box crop, the outside of its mask grey. On the
toy world the truth is known: every object's mask, box and palette colour. Running the protocol's
attribute step (:meth:`~sdprobe.analysis.judges.OpenVocabularyJudge.colour_of`) on the true
masks of held-out toy scenes measures that step alone, without the detector and segmenter in
front of it: the share of objects whose colour it names right, with an exact interval.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from sdprobe.analysis.judges import COLOURS, OpenVocabularyJudge
from sdprobe.analysis.stats import rate
from sdprobe.progress import progress

__all__ = ["colour_agreement"]


def colour_agreement(clip: str = "toy", *, scenes: int = 300, seed: int = 0, batch: int = 64,
                     colours: tuple[str, ...] = COLOURS) -> dict[str, Any]:
    """The colour step of the open-vocabulary judge on ``scenes`` held-out toy scenes' true masks.

    Args:
        clip: the CLIP that reads the colours (``"toy"``, a folder or a Hub id).
        scenes: toy scenes, drawn from held-out seeds (below the training seeds), every object of
            each judged.
        colours: the names the classifier chooses among (GenEval's ten by default).

    Returns:
        ``"rate"``, ``"ci"`` (exact binomial), ``"k"`` and ``"n"`` (objects named right, objects),
        ``"confusion"``: true colour → the names given, counted.
    """
    from sdprobe.world import EVAL_SEEDS_FROM, sample_scene

    judge = OpenVocabularyJudge("unused", "unused", clip, colours=colours)
    jobs = []
    for s in range(scenes):
        scene = sample_scene(EVAL_SEEDS_FROM + seed + s)
        picture, masks = scene.image(), scene.masks()
        for obj, mask in zip(scene.objects, masks):
            jobs.append((picture, (obj.box[0], obj.box[1], obj.box[2] + 1, obj.box[3] + 1), mask, obj.shape, obj.colour))
    named: list[str] = []
    for start in progress(range(0, len(jobs), batch), desc="colour step"):
        chunk = jobs[start:start + batch]
        named += judge.colour_of(*([j[i] for j in chunk] for i in range(4)))
    right = [n == j[4] for n, j in zip(named, jobs)]
    confusion: dict[str, Counter] = {}
    for n, j in zip(named, jobs):
        confusion.setdefault(j[4], Counter())[n] += 1
    return rate(right) | {"confusion": {c: dict(v) for c, v in confusion.items()}, "scenes": scenes}
