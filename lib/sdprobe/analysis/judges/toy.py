"""The toy world's exact judge behind the judges' interface: its own segmentation, no model.

A toy picture is judged by the world that drew its training scenes
(:func:`sdprobe.world.segment`): every palette-coloured blob is an instance, named by the
shape its outline fits best, in the palette colour of its pixels. The readings are exactly the
toy evaluation's (:func:`sdprobe.toy.evaluate.judge`), so the toy chapters' numbers do not
depend on which path asked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sdprobe.analysis.judges.prompts import StructuredPrompt
from sdprobe.analysis.judges.readings import Found, Reading
from sdprobe.images import to_pil

__all__ = ["ToyJudge"]


@dataclass
class ToyJudge:
    """The toy world's segmentation as a judge: exact on the toy model's pictures, meaningless on
    any other model's (the chapters refuse ``judge="toy"`` there)."""

    exact: bool = field(default=True, init=False)
    name: str = field(default="the toy world's segmentation (exact)", init=False)

    def read(self, images: Sequence[Any], prompts: Sequence[StructuredPrompt]) -> list[Reading]:
        """Read every picture against its prompt, whose nouns must be the world's shapes."""
        from sdprobe.world import SHAPES, background_of, segment

        pictures, prompts = [to_pil(im) for im in images], list(prompts)
        if len(pictures) != len(prompts):
            raise ValueError(f"{len(pictures)} pictures but {len(prompts)} prompts: give one prompt per picture")
        readings = []
        for picture, prompt in zip(pictures, prompts):
            unknown = [n for n in prompt.nouns if n not in SHAPES]
            if unknown:
                raise ValueError(f"the toy judge knows the world's shapes {list(SHAPES)}, not {unknown[0]!r} "
                                 f"(in {prompt.text!r}); judge real pictures with judge='open-vocabulary'")
            found = segment(picture)
            per_object = tuple(tuple(Found(d.shape, (d.box[0], d.box[1], d.box[2] + 1, d.box[3] + 1), d.shape_iou,
                                           d.mask, d.colour) for d in found if d.shape == o.noun)
                               for o in prompt.objects)
            background = background_of(picture) if prompt.backgrounds else None
            readings.append(Reading(prompt, per_object, background, (picture.height, picture.width)))
        return readings

    def appearance(self, images: Sequence[Any], prompts: Sequence[StructuredPrompt] | None = None, *,
                   readings: Sequence[Reading] | None = None) -> list[tuple]:
        """What each picture shows apart from its shapes, all of it: the colours of every object
        the world finds and the background (what a seed can change). ``prompts`` and
        ``readings`` are not needed: the world sees every object whatever was asked."""
        from sdprobe.world import appearance

        return [appearance(im) for im in images]
