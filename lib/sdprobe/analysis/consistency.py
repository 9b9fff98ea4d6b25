"""Is an edited image still the same picture? Foregrounds, keep-regions and a judge of one edit.

Yamada (ch. 04) changes one thing in a prompt, swaps U-Net features from the first run into the
second, and asks two questions: did the edit happen while the subject kept its pose (judged by
eye), and did the background stay (background MSE, the foreground found with rembg). This module
gives those pieces so that any chapter can ask them of any pair of images:

* :func:`foreground_mask`: the subject's pixels, from the toy world's segmentation (``"world"``:
  palette-coloured blobs, the right judge on the toy model) or from rembg's U²-Net (``"rembg"``,
  for real models; optional, and its weights must already be on disk: nothing is downloaded).
* :func:`keep_region`: a boolean grid at the U-Net's lowest resolution, True where a cell is
  (nearly) all background: where features may be taken from the first run without touching the
  subject. It replaces the paper's hand-picked region (its Fig. 4) by a rule.
* :func:`judge_edit`: the paper's two visual checks as numbers on toy images: does the subject
  show the requested colour, and does it still cover the same pixels as in the source image?
* :func:`read_image`: one segmentation of an image (subject, colour, foreground) that the
  others accept, so that a sweep segments each picture once.

Background MSE itself is :func:`sdprobe.analysis.metrics.background_mse` (0–255 units, mean over
background pixels); pass it the union of both images' foregrounds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image
from scipy import ndimage

from sdprobe.images import to_array

__all__ = [
    "FOREGROUND_METHODS",
    "EditJudgement",
    "ForegroundUnavailableError",
    "Reading",
    "foreground_mask",
    "judge_edit",
    "keep_region",
    "read_image",
    "rembg_model_path",
    "subject_iou",
]

Method = Literal["world", "rembg"]
FOREGROUND_METHODS: tuple[str, ...] = ("world", "rembg")


class ForegroundUnavailableError(RuntimeError):
    """The requested foreground method cannot run here (rembg or its weights are missing)."""


# ----------------------------------------------------------------------------- foregrounds


def rembg_model_path(model: str = "u2net") -> Path:
    """Where rembg looks for ``<model>.onnx``: ``$U2NET_HOME``, else ``$XDG_DATA_HOME/.u2net``, else ``~/.u2net``."""
    home = os.environ.get("U2NET_HOME") or os.path.join(os.environ.get("XDG_DATA_HOME", "~"), ".u2net")
    return Path(home).expanduser() / f"{model}.onnx"


def _rembg_mask(image: Any, model: str, threshold: int) -> np.ndarray:
    try:
        import rembg
    except ImportError:
        raise ForegroundUnavailableError(
            "foreground='rembg' needs the optional rembg package: pip install 'rembg[cpu]'"
        ) from None
    path = rembg_model_path(model)
    if not path.is_file():  # rembg would download it on first use; we never do
        raise ForegroundUnavailableError(
            f"rembg's {model}.onnx is not at {path}; copy it there (or set U2NET_HOME) from "
            f"https://github.com/danielgatis/rembg/releases/download/v0.0.0/{model}.onnx"
        )
    soft = rembg.remove(Image.fromarray(to_array(image)), session=rembg.new_session(model), only_mask=True)
    return np.asarray(soft) >= threshold


@dataclass(frozen=True)
class Reading:
    """What one image shows, read once: the subject's colour and outline, and every foreground pixel.

    Attributes:
        colour: the subject's toy-world colour (``None``: none found, or a method that sees no colours).
        subject: bool ``[H, W]``, the subject: the largest palette-coloured object (``"world"``),
            the whole foreground (``"rembg"``).
        foreground: bool ``[H, W]``, every object's pixels, grown by ``grow`` pixels.
    """

    colour: str | None
    subject: np.ndarray
    foreground: np.ndarray


def read_image(
    image: Any, method: Method = "world", *, grow: int = 1, rembg_model: str = "u2net", threshold: int = 128
) -> Reading:
    """Segment ``image`` once: its subject and its foreground (see :func:`foreground_mask` for the arguments).

    Raises:
        ValueError: an unknown method, or ``grow < 0``.
        ForegroundUnavailableError: rembg or its weights file are missing (nothing is downloaded).
    """
    if grow < 0:
        raise ValueError(f"grow is a number of pixels >= 0, got {grow}")
    if method == "world":
        from sdprobe.world import segment

        arr = to_array(image)
        found = sorted(segment(arr), key=lambda d: -d.area)
        mask = np.zeros(arr.shape[:2], dtype=bool)
        for obj in found:
            mask |= obj.mask
        colour, subject = (found[0].colour, found[0].mask) if found else (None, mask.copy())
    elif method == "rembg":
        mask = _rembg_mask(image, rembg_model, threshold)
        colour, subject = None, mask
    else:
        raise ValueError(f"foreground method must be one of {', '.join(map(repr, FOREGROUND_METHODS))}, not {method!r}")
    grown = ndimage.binary_dilation(mask, iterations=grow) if grow and mask.any() else mask
    return Reading(colour, subject, grown)


def foreground_mask(
    image: Any, method: Method = "world", *, grow: int = 1, rembg_model: str = "u2net", threshold: int = 128
) -> np.ndarray:
    """The subject's pixels, bool ``[H, W]``.

    Args:
        image: a PIL image or an ``[H, W, 3]`` uint8 array.
        method: ``"world"``: every palette-coloured object the toy world's :func:`segment` finds
            (on real photos it finds little; use it for the toy model). ``"rembg"``: rembg's
            soft mask at ``threshold`` (0–255; the paper gives none, 128 is our choice).
        grow: pixels added around the mask (a binary dilation), so that the subject's soft or
            thin edges (which the world's segmentation opens away) count as foreground.
        rembg_model: rembg session name (``"u2net"``; ``"isnet-anime"`` suits anime images).

    Raises:
        ValueError: an unknown method.
        ForegroundUnavailableError: rembg or its weights file are missing (nothing is downloaded).
    """
    return read_image(image, method, grow=grow, rembg_model=rembg_model, threshold=threshold).foreground


# ----------------------------------------------------------------------------- the keep region


def keep_region(foreground: Any, grid: tuple[int, int], *, max_share: float = 0.0) -> np.ndarray:
    """Grid cells to keep from the first run: bool ``[gh, gw]``, True where at most ``max_share``
    of the cell's pixels are foreground.

    ``grid`` is the U-Net's lowest resolution (``FeatureStore.lowest_resolution``: 14 × 10 at
    896 × 640 for SD 1.x); the image is split into that many cells, the last row and column
    taking any remainder, so every pixel belongs to one cell.
    """
    mask = np.asarray(foreground, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"foreground must be a 2-D [H, W] mask, got shape {mask.shape}")
    gh, gw = grid
    if not (isinstance(gh, int) and isinstance(gw, int)) or not (1 <= gh <= mask.shape[0] and 1 <= gw <= mask.shape[1]):
        raise ValueError(f"grid must be (rows, cols) between (1, 1) and the mask's {mask.shape}, got {grid}")
    if not 0.0 <= max_share <= 1.0:
        raise ValueError(f"max_share is a share of a cell's pixels in [0, 1], got {max_share}")
    rows = np.array_split(np.arange(mask.shape[0]), gh)
    cols = np.array_split(np.arange(mask.shape[1]), gw)
    share = np.array([[mask[np.ix_(r, c)].mean() for c in cols] for r in rows])
    return share <= max_share


# ----------------------------------------------------------------------------- judging one edit


@dataclass(frozen=True)
class EditJudgement:
    """The paper's two visual checks, made numbers for a toy-world subject.

    Attributes:
        colour: the colour the edited subject shows (``None``: no subject found).
        requested: the colour the edit asked for.
        pose_iou: IoU of the subject's mask in the edited image with the source image's (0–1).
        min_iou: the IoU counted as "the pose did not change".
    """

    colour: str | None
    requested: str
    pose_iou: float
    min_iou: float

    @property
    def edited(self) -> bool:
        """The subject shows the requested colour (the paper: "is she wearing trousers?")."""
        return self.colour == self.requested

    @property
    def kept(self) -> bool:
        """The subject covers the source's pixels (the paper: "is the pose unchanged?")."""
        return self.pose_iou >= self.min_iou

    @property
    def passed(self) -> bool:
        """Both checks hold: the paper scores only such images."""
        return self.edited and self.kept


def judge_edit(source: Any, edited: Any, requested: str, *, min_iou: float = 0.5) -> EditJudgement:
    """Judge a one-colour edit of a toy-world subject (the largest palette-coloured object).

    ``source`` and ``edited`` are images or their :class:`Reading` (to segment each image once).
    The subject's mask is compared by shape only (any colour), so a recoloured dog in the same
    place scores an IoU near 1 and a dog that moved or turned scores low.
    """
    from sdprobe.world import PALETTE

    if requested not in PALETTE:
        raise ValueError(f"requested colour {requested!r} is not a toy-world colour; choose one of {list(PALETTE)}")
    if not 0.0 <= min_iou <= 1.0:
        raise ValueError(f"min_iou must be in [0, 1], got {min_iou}")
    before, after = (x if isinstance(x, Reading) else read_image(x) for x in (source, edited))
    return EditJudgement(after.colour, requested, subject_iou(before, after), min_iou)


def subject_iou(before: Reading, after: Reading) -> float:
    """IoU of two readings' subjects (0 when neither has one)."""
    if before.subject.shape != after.subject.shape:
        raise ValueError(f"images differ in size: {before.subject.shape} and {after.subject.shape}")
    union = (before.subject | after.subject).sum()
    return float((before.subject & after.subject).sum() / union) if union else 0.0
