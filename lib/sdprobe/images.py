"""One way between the image types the library meets: PIL images, arrays and tensors.

* :func:`to_pil`: a ``[3, H, W]`` tensor in ``[-1, 1]``, or an ``[H, W, 3]`` uint8 array, or a
  PIL image → a PIL RGB image;
* :func:`to_array`: any image → uint8 ``[H, W, 3]`` (what the toy world's judge reads), or
  float ``[H, W, 3]`` in ``[0, 1]`` with ``unit=True``;
* :func:`to_tensor`: PIL images or uint8 arrays → float ``[B, 3, H, W]`` in ``[-1, 1]`` (what the
  VAE encodes).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

__all__ = ["to_array", "to_pil", "to_tensor"]


def to_pil(x: torch.Tensor | np.ndarray | Image.Image) -> Image.Image:
    """A ``[3, H, W]`` tensor in ``[-1, 1]`` or an ``[H, W, 3]`` uint8 array → a PIL image."""
    if isinstance(x, Image.Image):
        return x.convert("RGB") if x.mode != "RGB" else x
    if torch.is_tensor(x):
        arr = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
    else:
        arr = np.asarray(x)
    return Image.fromarray(arr)


def to_array(image: Any, *, unit: bool = False) -> np.ndarray:
    """Any image → ``[H, W, 3]``: uint8, or float32 in ``[0, 1]`` with ``unit=True``.

    Accepts a PIL image, an ``[H, W, 3]`` array (uint8, or float in ``[0, 1]``), or a ``[3, H, W]``
    tensor in ``[0, 1]`` (a pipeline's ``output_type="pt"``).

    Raises:
        ValueError: an array that is not ``[H, W, 3]``.
    """
    if isinstance(image, Image.Image):
        arr = np.asarray(image.convert("RGB"))
    elif torch.is_tensor(image):
        arr = image.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy()
    else:
        arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"an image is [H, W, 3], got an array of shape {arr.shape}")
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0 if unit else arr
    unit_arr = arr.astype(np.float32)
    return unit_arr if unit else (unit_arr * 255).round().clip(0, 255).astype(np.uint8)


def to_tensor(images: Sequence[Any] | Image.Image | np.ndarray) -> torch.Tensor:
    """PIL images or uint8 ``[H, W, 3]`` arrays (or one of either, or a uint8 ``[B, H, W, 3]``
    stack) → float ``[B, 3, H, W]`` in ``[-1, 1]``."""
    if isinstance(images, np.ndarray) and images.ndim == 4:
        stack = images
    else:
        items = [images] if isinstance(images, (Image.Image, np.ndarray)) else list(images)
        stack = np.stack([to_array(im) for im in items])
    return torch.from_numpy(stack.astype(np.float32) / 127.5 - 1.0).permute(0, 3, 1, 2).contiguous()
