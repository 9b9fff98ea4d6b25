"""Record the denoising trajectory of any pipeline call: x_t after every step and the predicted x0.

    with sdprobe.record_trajectory(pipe) as traj:
        image = pipe(prompt, num_inference_steps=50).images[0]
    traj.latents[0]       # x_T, the starting noise          [B, 4, h, w] (CPU)
    traj.latents[-1]      # the final latent, decoded into ``image``
    traj.x0[i]            # the clean latent predicted at step i
    traj.decode(pipe, i, which="x0")

The recorder wraps the pipeline's ``scheduler.step`` for the duration of the ``with`` block (the
pipelines call it once per loop iteration) and restores it afterwards, also after an exception.
Indices count scheduler calls: PNDM calls it ``steps + 1`` times, every other scheduler ``steps``.

The predicted x0 is computed the same way for every scheduler, from the U-Net's guided output:
the sample is brought to the DDPM parameterisation (divided by sqrt(sigma^2 + 1) for schedulers
that work in sigma space, such as Euler and LMS), then

* epsilon prediction: x0 = (x_t - sqrt(1 - abar) * eps) / sqrt(abar)
* v prediction:       x0 = sqrt(abar) * x_t - sqrt(1 - abar) * v
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from .latents import decode_latents

__all__ = ["Trajectory", "predict_x0", "record_trajectory"]


@dataclass
class Trajectory:
    """What one pipeline call went through, kept on the CPU.

    Attributes:
        latents: ``[n_calls + 1]`` tensors ``[B, 4, h, w]``: x_T, then the latent after each step.
        x0: ``[n_calls]`` tensors ``[B, 4, h, w]``: the clean latent predicted at each step.
        timesteps: the scheduler timestep of each call.
        sample_scale: ``[n_calls + 1]`` factors that bring ``latents[i]`` to unit variance
            (``1/sqrt(sigma^2 + 1)`` for sigma-space schedulers, else 1).
    """

    latents: list[torch.Tensor] = field(default_factory=list)
    x0: list[torch.Tensor] = field(default_factory=list)
    timesteps: list[float] = field(default_factory=list)
    sample_scale: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.x0)

    def latent(self, index: int, *, normalized: bool = True) -> torch.Tensor:
        """``latents[index]``, by default rescaled to the DDPM parameterisation (unit variance)."""
        z = self.latents[index]
        return z * self.sample_scale[index] if normalized else z

    def decode(self, pipe, index: int, *, which: str = "latent") -> list[Image.Image]:
        """Decode step ``index`` of ``which`` (``"latent"``: x_t; ``"x0"``: the predicted clean image)."""
        if which not in {"x0", "latent"}:
            raise ValueError(f"which must be 'latent' or 'x0', not {which!r}")
        z = self.x0[index] if which == "x0" else self.latent(index)
        return decode_latents(pipe, z)

    def step_difference(self, a: int, b: int, *, which: str = "latent") -> torch.Tensor:
        """Mean absolute difference over channels between steps ``a`` and ``b``: ``[B, h, w]``."""
        za, zb = (self.latent(i) if which == "latent" else self.x0[i] for i in (a, b))
        return (zb.float() - za.float()).abs().mean(dim=1)

    def image_difference(self, pipe, a: int, b: int, *, which: str = "x0") -> np.ndarray:
        """Mean absolute RGB difference ``[B, H, W]`` (0-255 units) between two decoded steps."""
        ia, ib = (np.stack([np.asarray(im, dtype=np.float32) for im in self.decode(pipe, i, which=which)]) for i in (a, b))
        return np.abs(ib - ia).mean(axis=-1)


def _alpha_bar_and_scale(scheduler, timestep) -> tuple[float, float]:
    """``(abar_t, scale)`` where ``scale * sample`` is the sample in the DDPM parameterisation."""
    if float(getattr(scheduler, "init_noise_sigma", 1.0)) != 1.0 and hasattr(scheduler, "sigmas"):
        index = scheduler.step_index
        if index is None:
            index = scheduler.index_for_timestep(timestep)
        sigma = float(scheduler.sigmas[index])
        return 1.0 / (1.0 + sigma**2), 1.0 / (1.0 + sigma**2) ** 0.5
    t = int(timestep.item() if torch.is_tensor(timestep) else timestep)
    return float(scheduler.alphas_cumprod[t]), 1.0


def predict_x0(scheduler, model_output: torch.Tensor, timestep, sample: torch.Tensor) -> torch.Tensor:
    """The clean latent implied by the U-Net's output at ``timestep`` (see the module docstring)."""
    abar, scale = _alpha_bar_and_scale(scheduler, timestep)
    x_t = sample.float() * scale
    out = model_output.float()
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return (x_t - (1 - abar) ** 0.5 * out) / abar**0.5
    if kind == "v_prediction":
        return abar**0.5 * x_t - (1 - abar) ** 0.5 * out
    if kind == "sample":
        return out
    raise ValueError(f"unsupported prediction_type {kind!r}")


@contextmanager
def record_trajectory(pipe) -> Iterator[Trajectory]:
    """Record every scheduler step of the pipeline calls made inside the block."""
    scheduler = pipe.scheduler
    original = scheduler.step
    shadowed = "step" in vars(scheduler)  # another recorder already wrapped this instance
    traj = Trajectory()

    def step(model_output, timestep, sample, *args, **kwargs):
        abar_scale = _alpha_bar_and_scale(scheduler, timestep)[1]
        x0 = predict_x0(scheduler, model_output, timestep, sample)
        out = original(model_output, timestep, sample, *args, **kwargs)
        prev = out[0] if isinstance(out, tuple) else out.prev_sample
        if not traj.latents:
            traj.latents.append(sample.detach().cpu())
            traj.sample_scale.append(abar_scale)
        traj.x0.append(x0.detach().cpu())
        traj.timesteps.append(float(timestep.item() if torch.is_tensor(timestep) else timestep))
        traj.latents.append(prev.detach().cpu())
        traj.sample_scale.append(_scale_after(scheduler))
        return out

    scheduler.step = step
    try:
        yield traj
    finally:
        if shadowed:
            scheduler.step = original
        else:
            del scheduler.step


def _scale_after(scheduler) -> float:
    """The DDPM-rescaling factor of the sample a step just produced."""
    if float(getattr(scheduler, "init_noise_sigma", 1.0)) != 1.0 and hasattr(scheduler, "sigmas"):
        index = scheduler.step_index  # already advanced to the next sigma
        sigma = float(scheduler.sigmas[min(index, len(scheduler.sigmas) - 1)])
        return 1.0 / (1.0 + sigma**2) ** 0.5
    return 1.0


def trajectory_gap(a: Trajectory, b: Trajectory, *, which: str = "x0") -> np.ndarray:
    """Per step, the mean absolute difference between two runs' latents (``"latent"``) or
    predicted clean latents (``"x0"``): where two prompts from the same noise part ways. ``[steps]``"""
    if len(a) != len(b):
        raise ValueError(f"trajectories differ in length: {len(a)} and {len(b)} steps")
    pick = (lambda t, i: t.x0[i]) if which == "x0" else (lambda t, i: t.latent(i + 1))
    return np.array([(pick(a, i).float() - pick(b, i).float()).abs().mean().item() for i in range(len(a))])
