"""What a judge saw in one picture: the instances of each asked object, their masks and colours.

Both judges (the toy world's exact one and the open-vocabulary one) fill the same
:class:`Reading`, and every harness reads its verdicts from it: which objects are present, in
which colour, how many, on which background, and where (their masks, for outlines, keep-regions
and foregrounds).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from sdprobe.analysis.judges.prompts import StructuredPrompt
from sdprobe.analysis.metrics import ImageJudgement

__all__ = ["Found", "Reading"]


@dataclass(frozen=True)
class Found:
    """One instance a judge found: what it is, where (pixel box ``(x0, y0, x1, y1)``, end
    exclusive, and bool ``[H, W]`` mask), how sure (a detector's score; the toy's template fit)
    and the colour it reads (None: undecided)."""

    noun: str
    box: tuple[int, int, int, int]
    score: float
    mask: np.ndarray = field(repr=False, compare=False)
    colour: str | None = None

    @property
    def area(self) -> int:
        return int(self.mask.sum())


@dataclass(frozen=True)
class Reading:
    """A judge's reading of one picture against its prompt.

    Attributes:
        prompt: what was asked.
        found: per object of the prompt, the instances of its noun the judge kept, best first.
        background: the place the judge sees among ``prompt.backgrounds`` (None when there are
            none to choose among, or it cannot tell).
        size: the picture's ``(H, W)``.
    """

    prompt: StructuredPrompt
    found: tuple[tuple[Found, ...], ...]
    background: str | None
    size: tuple[int, int]

    def __post_init__(self) -> None:
        if len(self.found) != len(self.prompt.objects):
            raise ValueError(f"a reading lists the instances of each of the {len(self.prompt.objects)} objects asked, "
                             f"got {len(self.found)} lists")

    @property
    def present(self) -> tuple[bool, ...]:
        """Whether each asked object is there, in any colour."""
        return tuple(bool(f) for f in self.found)

    @property
    def seen(self) -> tuple[str | None, ...]:
        """The colour each object shows, which is the asked colour if an instance has it and else
        the colour of its largest instance (None where absent)."""
        return tuple(_colour_of(found, o.colour) for o, found in zip(self.prompt.objects, self.found))

    @property
    def counts(self) -> tuple[int, ...]:
        """How many instances of each object are in its asked colour (any colour if none asked)."""
        return tuple(sum(o.colour is None or f.colour == o.colour for f in found)
                     for o, found in zip(self.prompt.objects, self.found))

    @property
    def judgement(self) -> ImageJudgement:
        """Presence and colours as :class:`~sdprobe.analysis.metrics.ImageJudgement` (for the
        missing-object and colour-swap rates)."""
        requested = tuple(o.colour or (seen or "any") for o, seen in zip(self.prompt.objects, self.seen))
        return ImageJudgement(requested, self.present, self.seen)

    @property
    def correct(self) -> bool:
        """Every object present in its asked colour and number (the background aside)."""
        j = self.judgement
        return (all(j.present) and all(s == r for s, r in zip(j.seen, j.requested))
                and self.counts == tuple(o.count for o in self.prompt.objects))

    @property
    def background_correct(self) -> bool | None:
        """Whether the background is the one the prompt names; None when it names none."""
        return None if self.prompt.background is None else self.background == self.prompt.background

    def mask(self, index: int = 0) -> np.ndarray:
        """Bool ``[H, W]``: every kept instance of object ``index`` (all False if none)."""
        return _union([f.mask for f in self.found[index]], self.size)

    def largest(self, index: int = 0) -> Found | None:
        """Object ``index``'s largest instance (the subject a sentence is about), or None."""
        return max(self.found[index], key=lambda f: f.area, default=None)

    @property
    def foreground(self) -> np.ndarray:
        """Bool ``[H, W]``: every kept instance of every asked object."""
        return _union([f.mask for found in self.found for f in found], self.size)

    @property
    def colours(self) -> tuple[str, ...]:
        """The colours of every instance found, sorted and without repeats (what a seed varies)."""
        return tuple(sorted({f.colour for found in self.found for f in found if f.colour}))


def _colour_of(found: Sequence[Found], wanted: str | None) -> str | None:
    right = [f for f in found if wanted is not None and f.colour == wanted]
    if right:
        return wanted
    return max(found, key=lambda f: f.area).colour if found else None


def _union(masks: Sequence[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    out = np.zeros(size, dtype=bool)
    for m in masks:
        out |= m
    return out
