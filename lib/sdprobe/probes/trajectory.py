"""Record the denoising trajectory of a pipeline call: x_t at every step and the predicted x0.

Example::

    with sdprobe.record_trajectory(pipe) as traj:
        image = pipe(prompt, num_inference_steps=20).images[0]
    traj.latents[0]       # x_T, the input of step 0                      [B, 4, h, w] (CPU)
    traj.latents[-1]      # the final latent, decoded into image
    traj.x0[k]            # the clean latent predicted at step k
    traj.decode(pipe, k, which="x0")

Steps follow the library's convention (:mod:`sdprobe.probes.hooks`): one per U-Net call, from 0;
``traj.latents[k]`` is the input of step ``k`` and ``traj.latents[k + 1]`` its result. PNDM
calls the U-Net ``steps + 1`` times, every other scheduler ``steps`` times. One pipeline call per
``with`` block (``several=True`` records each call into a list of trajectories).

Everything is read through module hooks, never by patching the pipeline or its scheduler: a
pre-hook on the U-Net sees each step's input, a forward hook its output, and a pre-hook on the
VAE's decoder the final latent. Latents are kept in the DDPM parameterisation (unit variance):
sigma-space schedulers (Euler, LMS) hand the U-Net ``x / sqrt(sigma^2 + 1)``, and that is what is
stored. With ``output_type="latent"`` the VAE never runs, so the final latent is not seen:
``traj.latents`` then ends with the input of the last step and ``traj.complete`` is False (the
final latent is the pipeline's own output).

The predicted x0 comes from the U-Net's guided output, ``uncond + s (cond - uncond)`` with the
pipeline's ``guidance_scale`` (and ``guidance_rescale`` where set), as the pipeline computes it:

* epsilon prediction: x0 = (x_t - sqrt(1 - abar) * eps) / sqrt(abar)
* v prediction:       x0 = sqrt(abar) * x_t - sqrt(1 - abar) * v
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from sdprobe.probes.hooks import PipelineHooks
from sdprobe.models.latents import decode_latents

__all__ = ["Trajectory", "predict_x0", "record_trajectory", "trajectory_gap"]


@dataclass
class Trajectory:
    """What one pipeline call went through, kept on the CPU in float32.

    Attributes:
        latents: ``[n_steps + 1]`` tensors ``[B, 4, h, w]``: the input of every step, then the
            final latent (``[n_steps]`` when ``complete`` is False).
        x0: ``[n_steps]`` tensors ``[B, 4, h, w]``: the clean latent predicted at each step.
        timesteps: the timestep of each step.
        complete: whether the final latent was seen (the VAE decoded it).
    """

    latents: list[torch.Tensor] = field(default_factory=list)
    x0: list[torch.Tensor] = field(default_factory=list)
    timesteps: list[float] = field(default_factory=list)
    complete: bool = False

    def __len__(self) -> int:
        return len(self.x0)

    def latent(self, index: int) -> torch.Tensor:
        """``latents[index]``: the input of step ``index`` (``len(self)``: the final latent)."""
        return self.latents[self._index(index, len(self.latents), "latent")]

    def decode(self, pipe: Any, index: int, *, which: str = "latent") -> list[Image.Image]:
        """Decode step ``index`` of ``which`` (``"latent"``: x_t; ``"x0"``: the predicted clean image)."""
        return decode_latents(pipe, self._pick(index, which))

    def step_difference(self, a: int, b: int, *, which: str = "latent") -> torch.Tensor:
        """Mean absolute difference over channels between steps ``a`` and ``b``: ``[B, h, w]``."""
        return (self._pick(b, which) - self._pick(a, which)).abs().mean(dim=1)

    def image_difference(self, pipe: Any, a: int, b: int, *, which: str = "x0") -> np.ndarray:
        """Mean absolute RGB difference ``[B, H, W]`` (0-255 units) between two decoded steps."""
        ia, ib = (np.stack([np.asarray(im, dtype=np.float32) for im in self.decode(pipe, i, which=which)]) for i in (a, b))
        return np.abs(ib - ia).mean(axis=-1)

    def _pick(self, index: int, which: str) -> torch.Tensor:
        if which == "x0":
            return self.x0[self._index(index, len(self.x0), "x0")]
        if which == "latent":
            return self.latent(index)
        raise ValueError(f"which must be 'latent' or 'x0', not {which!r}")

    def _index(self, index: int, count: int, what: str) -> int:
        if not -count <= index < count:
            note = "" if self.complete or what != "latent" else \
                " (the final latent was not seen: with output_type='latent' it is the pipeline's output)"
            raise IndexError(f"{what} {index} is out of range: the trajectory holds {count} "
                             f"(indices 0..{count - 1}, or negative from the end){note}")
        return index


def _alpha_bar(scheduler: Any, timestep: float) -> float:
    """abar at the step now running: from the scheduler's sigma for sigma-space schedulers (read
    after ``scale_model_input``, which sets its ``step_index``), else from ``alphas_cumprod``."""
    if float(getattr(scheduler, "init_noise_sigma", 1.0)) != 1.0 and hasattr(scheduler, "sigmas"):
        index = scheduler.step_index
        if index is None:
            index = scheduler.index_for_timestep(torch.tensor(timestep))
        return 1.0 / (1.0 + float(scheduler.sigmas[index]) ** 2)
    return float(scheduler.alphas_cumprod[int(round(timestep))])


def _x0(kind: str, abar: float, x_t: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """The clean latent implied by a model output on a unit-variance sample ``x_t``."""
    if kind == "epsilon":
        return (x_t - (1 - abar) ** 0.5 * out) / abar**0.5
    if kind == "v_prediction":
        return abar**0.5 * x_t - (1 - abar) ** 0.5 * out
    if kind == "sample":
        return out
    raise ValueError(f"unsupported prediction_type {kind!r}")


def predict_x0(scheduler: Any, model_output: torch.Tensor, timestep: Any, sample: torch.Tensor) -> torch.Tensor:
    """The clean latent implied by the U-Net's output at ``timestep`` for the scheduler's own
    ``sample`` (sigma-scaled for sigma-space schedulers); see the module docstring."""
    t = float(timestep.item() if torch.is_tensor(timestep) else timestep)
    abar = _alpha_bar(scheduler, t)
    scale = abar**0.5 if float(getattr(scheduler, "init_noise_sigma", 1.0)) != 1.0 and hasattr(scheduler, "sigmas") else 1.0
    return _x0(scheduler.config.prediction_type, abar, sample.float() * scale, model_output.float())


class _TrajectoryRecorder:
    """The hooks of one :func:`record_trajectory` block."""

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe
        self.runs: list[Trajectory] = []
        self.current: Trajectory | None = None
        self._input: torch.Tensor | None = None
        self._abar = 1.0
        self._awaiting_final = False

    def new_call(self, number: int) -> None:
        self.current = Trajectory()
        self.runs.append(self.current)

    def _images(self, batch: int) -> int:
        return batch // 2 if getattr(self.pipe, "do_classifier_free_guidance", False) else batch

    def step(self, step: int, t: float, args: tuple, kwargs: dict) -> None:
        sample = args[0] if args else kwargs["sample"]
        x_t = sample[-self._images(sample.shape[0]):].detach().float()  # the halves of a CFG batch are equal
        self.current.latents.append(x_t.cpu())
        self.current.timesteps.append(t)
        self._input, self._abar = x_t, _alpha_bar(self.pipe.scheduler, t)
        self._awaiting_final = False

    def after_unet(self, module: torch.nn.Module, args: tuple, output: Any) -> None:
        out = (output[0] if isinstance(output, tuple) else output.sample).detach().float()
        n = self._images(out.shape[0])
        if n != out.shape[0]:
            uncond, cond = out[:n], out[n:]
            out = uncond + self.pipe.guidance_scale * (cond - uncond)
            rescale = float(getattr(self.pipe, "guidance_rescale", 0.0) or 0.0)
            if rescale > 0:
                from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import rescale_noise_cfg

                out = rescale_noise_cfg(out, cond, guidance_rescale=rescale)
        kind = self.pipe.scheduler.config.prediction_type
        self.current.x0.append(_x0(kind, self._abar, self._input, out).cpu())
        self._awaiting_final = True

    def before_decode(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        if not self._awaiting_final or self.current is None:
            return  # a decode of something else (inside the block, after the final one)
        z = (args[0] if args else kwargs["sample"]).detach().float()
        config = self.pipe.vae.config
        mean, std = getattr(config, "latents_mean", None), getattr(config, "latents_std", None)
        if mean is not None and std is not None:  # SDXL-style: latents * std / scale + mean was decoded
            shape = (1, -1, 1, 1)
            z = (z - torch.tensor(mean).view(shape).to(z)) * config.scaling_factor / torch.tensor(std).view(shape).to(z)
        else:
            z = z * config.scaling_factor
        self.current.latents.append(z.cpu())
        self.current.complete = True
        self._awaiting_final = False


def _decoder_entry(vae: Any) -> torch.nn.Module:
    """The first module the VAE's ``decode`` runs on the latent."""
    if getattr(vae.config, "use_post_quant_conv", True) and getattr(vae, "post_quant_conv", None) is not None:
        return vae.post_quant_conv
    return vae.decoder


@contextmanager
def record_trajectory(pipe: Any, *, several: bool = False) -> Iterator[Trajectory | list[Trajectory]]:
    """Record the pipeline call made inside the block (see the module docstring).

    Yields a :class:`Trajectory`, filled as the pipeline runs; with ``several=True``, a list that
    gets one :class:`Trajectory` per pipeline call.

    Raises:
        SecondCallError: a second pipeline call inside the block without ``several=True``.
    """
    recorder = _TrajectoryRecorder(pipe)
    if not several:
        recorder.new_call(1)  # filled by the one call; the clock refuses a second
    with PipelineHooks(pipe, "record_trajectory", several=several) as hooks:
        hooks.clock.subscribe(call=recorder.new_call if several else None, step=recorder.step)
        hooks.forward_hook(pipe.unet, recorder.after_unet)
        hooks.pre_hook(_decoder_entry(pipe.vae), recorder.before_decode)
        yield recorder.runs if several else recorder.current


def trajectory_gap(a: Trajectory, b: Trajectory, *, which: str = "x0") -> np.ndarray:
    """Per step, the mean absolute difference between two runs' latents (``"latent"``: each step's
    result) or predicted clean latents (``"x0"``): where two prompts from the same noise part
    ways. ``[steps]``"""
    if len(a) != len(b):
        raise ValueError(f"trajectories differ in length: {len(a)} and {len(b)} steps")
    pick = (lambda t, i: t.x0[i]) if which == "x0" else (lambda t, i: t.latent(i + 1))
    return np.array([(pick(a, i).float() - pick(b, i).float()).abs().mean().item() for i in range(len(a))])
