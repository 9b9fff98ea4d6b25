"""Judges: what a picture shows, read against what its prompt asked for.

One interface, two implementations, chosen by :func:`make_judge`:

* :class:`ToyJudge`, the toy world's exact segmentation, for the toy model's pictures;
* :class:`OpenVocabularyJudge`, OWLv2 boxes, SAM masks and CLIP colours after GenEval's
  protocol, for any other model's.

Both take pictures with their :class:`StructuredPrompt` (objects with colour and count, a place)
and return one :class:`Reading` each: the instances of every asked object with their masks and
colours, and the place seen. Every harness reads its verdicts (present, right colour, colour
swapped, count right, outline) from readings, so every claim is measured the same way on any
model::

    judge = make_judge("auto", model="CompVis/stable-diffusion-v1-4", device="cuda")
    reading = judge.read(images, [StructuredPrompt.from_mapping(record)])[0]
    reading.correct, reading.judgement.swapped, reading.mask(0)
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from sdprobe.analysis.judges.open_vocabulary import (
    DEFAULT_CLIP, DEFAULT_DETECTOR, DEFAULT_SEGMENTER, OpenVocabularyJudge, load_models,
)
from sdprobe.analysis.judges.prompts import COLOURS, Edit, ObjectClause, StructuredPrompt, load_prompt_set, prompt_sets
from sdprobe.analysis.judges.readings import Found, Reading
from sdprobe.analysis.judges.toy import ToyJudge

__all__ = [
    "COLOURS", "DEFAULT_CLIP", "DEFAULT_DETECTOR", "DEFAULT_SEGMENTER", "JUDGES", "Edit", "Found", "Judge",
    "ObjectClause", "OpenVocabularyJudge", "Reading", "StructuredPrompt", "ToyJudge", "judge_models", "load_models",
    "load_prompt_set", "make_judge", "prompt_sets",
]

#: The ``judge`` parameter's values.
JUDGES = ("auto", "toy", "open-vocabulary")


@runtime_checkable
class Judge(Protocol):
    """What every judge offers: a name for the report, whether it is exact, :meth:`read` and
    :meth:`appearance`."""

    name: str
    exact: bool

    def read(self, images: Any, prompts: Any) -> list[Reading]:
        """One :class:`Reading` per picture, against the prompt given for it."""
        ...

    def appearance(self, images: Any, prompts: Any, *, readings: Any = None) -> list[tuple]:
        """Per picture, what a seed can change (colours and place), comparable with ``==``;
        ``readings`` of the same pictures spare a second reading."""
        ...


def judge_models(model: str, *, detector: str = "auto", segmenter: str = "auto", clip_model: str = "auto") -> dict[str, str]:
    """The judge models a chapter's ``detector``, ``segmenter`` and ``clip_model`` parameters
    name, with ``"auto"`` resolved: the toy's own (``"toy"``) on the toy model, the paper
    presets' open-vocabulary models (OWLv2 base/16, SAM ViT-B, CLIP ViT-L/14) on any other.

    Raises:
        ValueError: ``"toy"`` as the detector or segmenter of a model that is not the toy.
    """
    toy = model == "toy"
    chosen = {"detector": detector, "segmenter": segmenter, "clip_model": clip_model}
    defaults = {"detector": DEFAULT_DETECTOR, "segmenter": DEFAULT_SEGMENTER, "clip_model": DEFAULT_CLIP}
    for name, value in chosen.items():
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{name} is 'auto', 'toy', a folder or a Hub id, not {value!r}")
        if value == "auto":
            chosen[name] = "toy" if toy else defaults[name]
        elif value == "toy" and not toy and name != "clip_model":
            raise ValueError(f"{name}='toy' finds the toy world's shapes only, and model={model!r} is not the toy: "
                             f"use {name}='auto' ({defaults[name]}) or a folder")
    return chosen


def make_judge(kind: str = "auto", *, model: str, detector: str = "auto", segmenter: str = "auto",
               clip_model: str = "auto", device: Any = "cpu", dtype: str = "auto") -> ToyJudge | OpenVocabularyJudge:
    """The judge a chapter's parameters ask for.

    Args:
        kind: ``"auto"`` (the toy judge on the toy model, the open-vocabulary one on any
            other), ``"toy"`` or ``"open-vocabulary"``.
        model: the chapter's ``model`` parameter (``"toy"``, ``"random:sd1"``, a folder, a Hub id).
        detector, segmenter, clip_model: the open-vocabulary judge's models (:func:`judge_models`).
        device, dtype: where and in what precision the judge's models run (the pipeline's device).

    Raises:
        ValueError: an unknown ``kind``, ``judge="toy"`` on a model that is not the toy, or a
            toy-only model named for another model's pictures (one line).
    """
    if kind not in JUDGES:
        raise ValueError(f"judge must be one of {', '.join(JUDGES)}, not {kind!r}")
    names = judge_models(model, detector=detector, segmenter=segmenter, clip_model=clip_model)
    if kind == "toy" and model != "toy":
        raise ValueError(f"judge='toy' reads only the toy model's pictures, and model={model!r} is not the toy: "
                         "use judge='auto' or 'open-vocabulary'")
    if kind == "toy" or kind == "auto" and model == "toy":
        return ToyJudge()
    if "toy" in (names["detector"], names["segmenter"]):
        raise ValueError("the open-vocabulary judge needs a detector and a segmenter (OWLv2 and SAM folders or Hub "
                         f"ids), not 'toy': got detector={names['detector']!r}, segmenter={names['segmenter']!r}")
    return OpenVocabularyJudge(names["detector"], names["segmenter"], names["clip_model"], device=device, dtype=dtype)
