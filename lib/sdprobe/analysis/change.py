"""Where and when a generation changes: per-step change maps and their split over a region.

    with sdprobe.record_trajectory(pipe) as traj:
        image = pipe(prompt, num_inference_steps=50).images[0]
    frames = trajectory_frames(traj, pipe)            # [n, H, W, 3] decoded x̂0 of every step
    changes = change_maps(frames)                     # [n - 1, H, W] |frame[k+1] - frame[k]|
    share = region_share(changes, mask)               # [n - 1] part of each step's change inside mask
    inside, outside = half_times(changes, mask)       # when each region had half its change
    done_in, done_out = cumulative_change(changes, mask)  # [n] each, rising 0 → 1

This turns the question "is the subject drawn first, and its surroundings later?" (Shinozaki et
al.'s reading of DAAM heat maps beside the denoising steps) into numbers: given a mask of the
subject (a thresholded heat map, or a true object mask), :func:`region_share` says how much of
each step's change falls on it, :func:`concentration` compares that with the mask's area (1 means
change spread evenly), and :func:`half_times` says how early each region got half of all the
change it ever receives. Everything works on plain arrays, so the frames may be decoded images,
predicted clean latents or anything else stacked along the first axis.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from sdprobe.models.latents import decode_latents

if TYPE_CHECKING:  # annotations only: analysis sits below the probes and never imports them
    from sdprobe.probes.trajectory import Trajectory

__all__ = ["change_maps", "concentration", "cumulative_change", "half_times", "region_share", "trajectory_frames"]


def trajectory_frames(traj: Trajectory, pipe: Any, *, which: str = "x0", image: int = 0, batch_size: int = 8) -> np.ndarray:
    """Decode every step of a recorded trajectory: float32 ``[n, H, W, 3]`` in 0–255.

    Args:
        which: ``"x0"``: frame ``k`` is the clean image predicted at step ``k``; ``"latent"``:
            the sample x_t right after step ``k`` (so the last frame is the generated image).
        image: which image of the batch.
        batch_size: latents decoded per VAE call (memory against speed).
    """
    if which not in {"x0", "latent"}:
        raise ValueError(f"which must be 'x0' or 'latent', not {which!r}")
    if len(traj) == 0:
        raise ValueError("the trajectory is empty: run the pipeline inside `with record_trajectory(pipe) as traj:`")
    batch = traj.x0[0].shape[0]
    if not 0 <= image < batch:
        raise IndexError(f"image={image} is out of range: the trajectory holds {batch} image(s)")
    pick = (lambda k: traj.x0[k]) if which == "x0" else (lambda k: traj.latent(k + 1))
    latents = torch.cat([pick(k)[image:image + 1] for k in range(len(traj))])  # [n, 4, h, w]
    out = []
    for chunk in latents.split(max(1, batch_size)):
        out.extend(np.asarray(im, dtype=np.float32) for im in decode_latents(pipe, chunk))
    return np.stack(out)


def change_maps(frames: np.ndarray | torch.Tensor, *, channel_axis: int = -1) -> np.ndarray:
    """Mean absolute change between consecutive frames, averaged over channels.

    Args:
        frames: ``[n, H, W, C]`` (images, ``channel_axis=-1``) or ``[n, C, h, w]`` (latents,
            ``channel_axis=1``), ``n >= 2``.

    Returns:
        float64 ``[n - 1, H, W]``; map ``k`` is the change from frame ``k`` to frame ``k + 1``.
    """
    arr = frames.detach().cpu().double().numpy() if torch.is_tensor(frames) else np.asarray(frames, dtype=np.float64)
    if arr.ndim != 4 or arr.shape[0] < 2:
        raise ValueError(f"frames must be a stack [n >= 2, ...] of 3-D frames, got shape {arr.shape}")
    return np.abs(np.diff(arr, axis=0)).mean(axis=channel_axis)


def _check(changes: np.ndarray, mask: Any) -> tuple[np.ndarray, np.ndarray]:
    """``changes`` as float64 ``[n, H, W]``, ``mask`` as bool ``[H, W]`` with both regions non-empty."""
    c = np.asarray(changes, dtype=np.float64)
    m = (mask.detach().cpu().numpy() if torch.is_tensor(mask) else np.asarray(mask)).astype(bool)
    if c.ndim != 3:
        raise ValueError(f"changes must be [steps, H, W], got shape {c.shape}")
    if m.shape != c.shape[1:]:
        raise ValueError(f"the mask is {m.shape} but the change maps are {c.shape[1:]}: resize one to the other")
    if not m.any() or m.all():
        raise ValueError(f"the mask covers {m.mean():.0%} of the image: inside and outside must both be non-empty")
    return c, m


def region_share(changes: np.ndarray, mask: Any) -> np.ndarray:
    """Per step, the part of the total change that falls inside ``mask``: ``[n]`` in [0, 1].

    A step with no change at all has share ``nan``.
    """
    c, m = _check(changes, mask)
    total = c.sum(axis=(1, 2))
    inside = c[:, m].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, inside / total, np.nan)


def concentration(changes: np.ndarray, mask: Any) -> np.ndarray:
    """Per step, mean change inside ``mask`` over mean change outside it: ``[n]``.

    1 means the step changed both regions equally per pixel; above 1, the masked region changed
    more. Independent of the mask's area, unlike :func:`region_share`. A step that changed only
    the inside gives ``inf``; one that changed nothing, ``nan``.
    """
    c, m = _check(changes, mask)
    inside, outside = c[:, m].mean(axis=1), c[:, ~m].mean(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return inside / outside


def cumulative_change(changes: np.ndarray, mask: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per region, the part of all its change done after each step: ``(inside, outside)``, each
    ``[n + 1]`` rising from 0 to 1 (``nan`` for a region that never changes)."""
    c, m = _check(changes, mask)

    def rising(per_step: np.ndarray) -> np.ndarray:
        cum = np.concatenate([[0.0], np.cumsum(per_step)])
        return cum / cum[-1] if cum[-1] > 0 else np.full_like(cum, np.nan)

    return rising(c[:, m].sum(axis=1)), rising(c[:, ~m].sum(axis=1))


def _half_time(cum: np.ndarray) -> float:
    """Steps (fractional, linear within a step) until a rising ``[n + 1]`` curve reaches 0.5."""
    if np.isnan(cum[-1]):
        return float("nan")
    k = int(np.argmax(cum >= 0.5))  # first point at or past half; cum[0] = 0 so k >= 1
    return float(k - 1 + (0.5 - cum[k - 1]) / (cum[k] - cum[k - 1]))


def half_times(changes: np.ndarray, mask: Any) -> tuple[float, float]:
    """How many steps each region takes to receive half of all its change: ``(inside, outside)``.

    The change of a region is summed over its pixels per step and accumulated over the steps
    (:func:`cumulative_change`); the value is interpolated linearly within the step that crosses
    one half, so it lies in ``[0, n]`` for ``n`` change maps. The smaller value belongs to the
    region that settled first.
    """
    inside, outside = cumulative_change(changes, mask)
    return _half_time(inside), _half_time(outside)
