"""sdprobe.analysis.change: per-step change maps and how they split over a region."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sdprobe.analysis.change import change_maps, concentration, cumulative_change, half_times, region_share, trajectory_frames
from sdprobe.probes.trajectory import record_trajectory

from conftest import TINY_FAMILIES, generator


def painted_frames(order: str, steps: int = 6, size: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Frames ``[steps + 1, size, size, 3]`` in which the left half is painted during the first
    half of the steps and the right half during the second (or the reverse), and the left mask."""
    mask = np.zeros((size, size), bool)
    mask[:, : size // 2] = True
    frames = np.zeros((steps + 1, size, size, 3), np.float32)
    first, second = (mask, ~mask) if order == "mask first" else (~mask, mask)
    for k in range(1, steps + 1):
        frames[k] = frames[k - 1]
        region = first if k <= steps // 2 else second
        frames[k][region] += 10.0
    return frames, mask


def test_change_maps_are_the_channel_mean_of_consecutive_differences():
    frames = torch.zeros(3, 2, 4, 5)  # latents [n, C, h, w]
    frames[1, 0] = 2.0
    frames[2] = frames[1]
    frames[2, 1, 0, 0] = -4.0
    maps = change_maps(frames, channel_axis=1)
    assert maps.shape == (2, 4, 5)
    assert np.allclose(maps[0], 1.0)  # one of two channels moved by 2
    assert maps[1, 0, 0] == pytest.approx(2.0) and maps[1].sum() == pytest.approx(2.0)


def test_region_share_and_concentration_follow_where_the_change_happens():
    frames, mask = painted_frames("mask first")
    changes = change_maps(frames)
    share, conc = region_share(changes, mask), concentration(changes, mask)
    assert np.allclose(share[:3], 1.0) and np.allclose(share[3:], 0.0)
    assert np.all(np.isposinf(conc[:3]))  # nothing changed outside in the first half
    assert np.allclose(conc[3:], 0.0)


def test_concentration_is_one_for_change_spread_evenly():
    changes = np.ones((4, 6, 6))
    mask = np.zeros((6, 6), bool)
    mask[:2, :2] = True
    assert np.allclose(concentration(changes, mask), 1.0)
    assert np.allclose(region_share(changes, mask), 4 / 36)


@pytest.mark.parametrize("order", ["mask first", "mask last"])
def test_half_times_say_which_region_settles_first(order):
    frames, mask = painted_frames(order)
    inside, outside = half_times(change_maps(frames), mask)
    assert inside == pytest.approx(1.5 if order == "mask first" else 4.5)
    assert outside == pytest.approx(4.5 if order == "mask first" else 1.5)


def test_cumulative_change_rises_from_zero_to_one_per_region():
    frames, mask = painted_frames("mask first")
    inside, outside = cumulative_change(change_maps(frames), mask)
    assert inside.shape == outside.shape == (7,)
    assert inside[0] == outside[0] == 0.0 and inside[-1] == outside[-1] == 1.0
    assert np.all(np.diff(inside) >= 0) and inside[3] == 1.0 and outside[3] == 0.0
    still = np.zeros((3, 4, 4))
    still[:, :2] = 1.0  # only the top changes: the bottom has no curve
    top = np.zeros((4, 4), bool)
    top[:2] = True
    assert np.isnan(cumulative_change(still, ~top)[0]).all() and np.isnan(half_times(still, ~top)[0])


def test_bad_masks_are_refused_with_a_readable_message():
    changes = np.ones((3, 4, 4))
    with pytest.raises(ValueError, match="resize"):
        region_share(changes, np.ones((8, 8), bool))
    with pytest.raises(ValueError, match="both be non-empty"):
        half_times(changes, np.zeros((4, 4), bool))
    with pytest.raises(ValueError, match="both be non-empty"):
        concentration(changes, np.ones((4, 4), bool))
    with pytest.raises(ValueError, match="n >= 2"):
        change_maps(np.ones((1, 4, 4, 3)))


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_trajectory_frames_decode_every_step_deterministically(tiny_pipes, family):
    pipe = tiny_pipes(family)

    def run() -> tuple[np.ndarray, int]:
        with record_trajectory(pipe) as traj:
            pipe("a dog", num_inference_steps=3, height=64, width=64, generator=generator(0))
        return trajectory_frames(traj, pipe), len(traj)  # PNDM makes one call more

    frames, steps = run()
    assert frames.shape == (steps, 64, 64, 3) and frames.dtype == np.float32
    assert steps >= 3 and np.array_equal(frames, run()[0])
    assert change_maps(frames).shape == (steps - 1, 64, 64)


def test_trajectory_frames_refuse_an_empty_trajectory_or_a_missing_image(tiny_pipes):
    pipe = tiny_pipes("sd1-tiny")
    with record_trajectory(pipe) as traj:
        pass
    with pytest.raises(ValueError, match="empty"):
        trajectory_frames(traj, pipe)
    with record_trajectory(pipe) as traj:
        pipe("a dog", num_inference_steps=2, height=64, width=64, generator=generator(0))
    with pytest.raises(IndexError, match="out of range"):
        trajectory_frames(traj, pipe, image=1)
    with pytest.raises(ValueError, match="'x0' or 'latent'"):
        trajectory_frames(traj, pipe, which="noise")


def test_latent_frames_end_on_the_generated_image_and_batching_does_not_matter(tiny_pipes):
    pipe = tiny_pipes("sd1-tiny")
    with record_trajectory(pipe) as traj:
        image = pipe("a dog", num_inference_steps=3, height=64, width=64, generator=generator(0)).images[0]
    frames = trajectory_frames(traj, pipe, which="latent", batch_size=1)
    assert np.array_equal(frames[-1], np.asarray(image, dtype=np.float32))
    assert np.abs(trajectory_frames(traj, pipe, which="latent", batch_size=3) - frames).max() <= 1.0  # rounding only
