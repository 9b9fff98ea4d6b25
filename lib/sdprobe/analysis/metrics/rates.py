"""Error rates over judged pictures: missing objects and swapped colours."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ImageJudgement:
    """What a judge (a person, a detector, the toy world's segmentation) saw in one image.

    Attributes:
        requested: the colour asked for each object, e.g. ``("red", "white")``.
        present: whether each object is in the image.
        seen: the colour each object shows (``None`` where absent or undecided).
    """

    requested: tuple[str, ...]
    present: tuple[bool, ...]
    seen: tuple[str | None, ...]

    def __post_init__(self) -> None:
        if not (len(self.requested) == len(self.present) == len(self.seen)) or not self.requested:
            raise ValueError("requested, present and seen must list the same objects (at least one)")

    @property
    def missing(self) -> bool:
        return not all(self.present)

    @property
    def swapped(self) -> bool:
        """Some present object shows another object's requested colour instead of its own."""
        for k, (want, here, saw) in enumerate(zip(self.requested, self.present, self.seen)):
            others = {c for j, c in enumerate(self.requested) if j != k and c != want}
            if here and saw is not None and saw != want and saw in others:
                return True
        return False


def _judgements(judgements: Sequence[ImageJudgement]) -> list[ImageJudgement]:
    js = list(judgements)
    if not js:
        raise ValueError("no judgements given")
    if not all(isinstance(j, ImageJudgement) for j in js):
        raise TypeError("judgements must be ImageJudgement records")
    return js


def missing_object_rate(judgements: Sequence[ImageJudgement]) -> float:
    """Share of images in which at least one requested object is missing."""
    js = _judgements(judgements)
    return sum(j.missing for j in js) / len(js)


def colour_swap_rate(judgements: Sequence[ImageJudgement], *, among_complete: bool = True) -> float:
    """Share of images with a colour swap (see :attr:`ImageJudgement.swapped`).

    ``among_complete=True`` counts only images where every object is present (a swap needs both
    objects); with none such the rate is NaN. ``False`` divides by all images.
    """
    js = _judgements(judgements)
    pool = [j for j in js if not j.missing] if among_complete else js
    return sum(j.swapped for j in pool) / len(pool) if pool else math.nan
