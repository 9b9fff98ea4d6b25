"""Placement overlap: box and mask IoU, and the placement IoU of a picture against a box or mask."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

BoxLike = Sequence[float]


def _check_box(box: BoxLike, name: str = "box") -> tuple[float, float, float, float]:
    if len(box) != 4:
        raise ValueError(f"{name} must be (x0, y0, x1, y1), got {tuple(box)}")
    x0, y0, x1, y1 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)) or x1 < x0 or y1 < y0:
        raise ValueError(f"{name} {tuple(box)} must be finite with x0 <= x1 and y0 <= y1")
    return x0, y0, x1, y1


def box_iou(a: BoxLike, b: BoxLike) -> float:
    """Intersection over union of two ``(x0, y0, x1, y1)`` boxes in the same units.

    Two boxes of zero area have nothing to overlap: IoU 0.
    """
    ax0, ay0, ax1, ay1 = _check_box(a, "first box")
    bx0, by0, bx1, by1 = _check_box(b, "second box")
    inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
    return inter / union if union > 0 else 0.0


def _as_mask(mask: Any, name: str) -> np.ndarray:
    m = mask.detach().cpu().numpy() if torch.is_tensor(mask) else np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"{name} must be a 2-D [H, W] mask, got shape {m.shape}")
    return m.astype(bool)


def mask_iou(a: Any, b: Any) -> float:
    """IoU of two boolean masks ``[H, W]`` (numpy arrays or tensors), the library's one mask IoU.

    Two empty masks are identical and score 1.0; an empty and a non-empty mask score 0.0.
    """
    ma, mb = _as_mask(a, "first mask"), _as_mask(b, "second mask")
    if ma.shape != mb.shape:
        raise ValueError(f"masks differ in shape: {ma.shape} and {mb.shape}")
    union = np.logical_or(ma, mb).sum()
    return float(np.logical_and(ma, mb).sum() / union) if union else 1.0


def per_object_iou(mask: Any, objects: Sequence[Any]) -> float:
    """Mean IoU of ``mask`` with each of several ``objects`` (bool masks ``[H, W]``), each scored
    only on the pixels nearer to it than to any other object.

    A heat map of "dogs" that covers three dogs also covers the field between them; scored against
    their union, that field counts against it. Here every pixel belongs to its nearest object
    (a Voronoi split of the image by distance to each object), and each object is scored against
    the part of the mask in its own cell, so the map is judged dog by dog. With one object this
    is :func:`mask_iou`.

    Raises:
        ValueError: no objects, or masks of different shapes.
    """
    from scipy.ndimage import distance_transform_edt

    if not len(objects):
        raise ValueError("per_object_iou needs at least one object mask")
    m = _as_mask(mask, "mask")
    objs = [_as_mask(o, f"object {k}") for k, o in enumerate(objects)]
    if any(o.shape != m.shape for o in objs):
        raise ValueError(f"masks differ in shape: {m.shape} and {[o.shape for o in objs]}")
    if len(objs) == 1:
        return mask_iou(m, objs[0])
    distance = np.stack([distance_transform_edt(~o) for o in objs])  # 0 on the object itself
    nearest = distance.argmin(axis=0)
    return float(np.mean([mask_iou(m & (nearest == k), o) for k, o in enumerate(objs)]))


def mask_to_box(mask: Any) -> tuple[int, int, int, int] | None:
    """The tight pixel box ``(x0, y0, x1, y1)`` (end exclusive) around a mask, or ``None`` if empty."""
    m = _as_mask(mask, "mask")
    rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
    if rows.size == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def placement_iou(
    requested: BoxLike,
    *,
    mask: Any = None,
    box: BoxLike | None = None,
    detector: Callable[[Any, str], Sequence[BoxLike]] | None = None,
    image: Any = None,
    label: str | None = None,
) -> float:
    """IoU between the box an object was asked for and where it is, in pixel units.

    Give exactly one of ``mask`` (``[H, W]``, its tight box is compared: the object's extent),
    ``box``, or ``detector`` with ``image`` and ``label``. A detector returns candidate boxes for
    the label; as in open-vocabulary layout benchmarks (e.g. CoBench with OWLv2), the candidate
    with the best IoU against the request counts. A missing object (empty mask, no detection)
    scores 0.
    """
    given = [x is not None for x in (mask, box, detector)]
    if sum(given) != 1:
        raise ValueError("give exactly one of mask=, box= or detector= (with image= and label=)")
    _check_box(requested, "requested box")
    if mask is not None:
        found = mask_to_box(mask)
        return 0.0 if found is None else box_iou(requested, found)
    if box is not None:
        return box_iou(requested, box)
    if image is None or not label:
        raise ValueError("detector= needs image= and label=")
    candidates = list(detector(image, label))
    return max((box_iou(requested, c) for c in candidates), default=0.0)


def detector_from_pipeline(detect: Callable[..., Any], *, threshold: float = 0.1) -> Callable[[Any, str], list[tuple[float, float, float, float]]]:
    """Wrap a ``transformers`` zero-shot object detection pipeline (e.g. OWLv2 from local weights:
    ``pipeline("zero-shot-object-detection", model=folder)``) as a :func:`placement_iou` detector.

    The wrapped callable returns the pixel boxes scoring at least ``threshold`` for one label.
    """
    def detector(image: Any, label: str) -> list[tuple[float, float, float, float]]:
        found = detect(image, candidate_labels=[label])
        return [(d["box"]["xmin"], d["box"]["ymin"], d["box"]["xmax"], d["box"]["ymax"])
                for d in found if d["score"] >= threshold]

    return detector
