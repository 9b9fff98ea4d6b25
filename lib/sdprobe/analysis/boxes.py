"""Boxes as fractions of the image: where an object should go, and where a region search put it.

A :class:`Box` is ``(x0, y0, x1, y1)`` in fractions of the image side, origin top-left, so one
layout serves any image size; :meth:`Box.cells` maps it onto a latent grid and
:meth:`Box.to_pixels` onto an image. (Boxes in pixels, as detectors return them, are plain
tuples: see :func:`sdprobe.analysis.metrics.box_iou`.)
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["Box"]


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in fractions of the image: ``0 <= x0 < x1 <= 1``, ``0 <= y0 < y1 <= 1``."""

    x0: float
    y0: float
    x1: float
    y1: float

    def __post_init__(self) -> None:
        vals = (self.x0, self.y0, self.x1, self.y1)
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in vals):
            raise ValueError(f"box coordinates must be finite numbers, got {vals}")
        if not (0 <= self.x0 < self.x1 <= 1 and 0 <= self.y0 < self.y1 <= 1):
            raise ValueError(
                f"box {vals} must satisfy 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1 "
                "(fractions of the image, origin top-left); it lies outside the image or is empty"
            )

    @classmethod
    def of(cls, box: Box | Sequence[float]) -> Box:
        """Accept a :class:`Box` or any ``(x0, y0, x1, y1)`` sequence of numbers.

        Raises:
            ValueError: anything else (text, a mapping, four things that are not numbers).
        """
        if isinstance(box, Box):
            return box
        form = "a box is (x0, y0, x1, y1) in fractions of the image, or a Box"
        if isinstance(box, (str, bytes, Mapping)) or not hasattr(box, "__len__") or not hasattr(box, "__iter__"):
            raise ValueError(f"{form}, not {box!r}")
        if len(box) != 4:
            raise ValueError(f"{form}; got {len(box)} numbers: {tuple(box)}")
        values = list(box)
        if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values):
            raise ValueError(f"{form}; {tuple(values)} holds something that is not a number")
        return cls(*(float(v) for v in values))

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    def cells(self, h: int, w: int) -> tuple[int, int, int, int]:
        """Rows and columns ``(r0, r1, c0, c1)`` the box covers on an ``h × w`` grid (end exclusive).

        Raises ``ValueError`` when the box is smaller than one cell along either side.
        """
        if self.height * h < 1 - 1e-9 or self.width * w < 1 - 1e-9:
            raise ValueError(
                f"box {self.as_tuple()} covers {self.width * w:.2f} × {self.height * h:.2f} cells of the "
                f"{h} × {w} latent; it must span at least one latent cell each way"
            )
        r0, r1 = round(self.y0 * h), round(self.y1 * h)
        c0, c1 = round(self.x0 * w), round(self.x1 * w)
        return r0, max(r1, r0 + 1), c0, max(c1, c0 + 1)

    def to_pixels(self, width: int, height: int) -> tuple[int, int, int, int]:
        """``(x0, y0, x1, y1)`` in pixels of a ``width × height`` image."""
        return (round(self.x0 * width), round(self.y0 * height), round(self.x1 * width), round(self.y1 * height))

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (self.x0, self.y0, self.x1, self.y1)
