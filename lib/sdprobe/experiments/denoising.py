"""Chapter 00's measurements: the forward process, the denoising loop and guidance, each over
many seeds.

One batch design serves every picture claim: ``P`` prompts × ``S`` seeds, image ``p·S + s``
drawn from the generator seeded ``seed + s``, so two prompts with the same ``s`` start from the
same noise, and the same (prompt, seed) pair recurs at every guidance scale.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np
import torch
from PIL import Image

from sdprobe.analysis.judges import Judge, StructuredPrompt
from sdprobe.analysis.stats import mcnemar, paired_difference, rate, sign_test
from sdprobe.probes.trajectory import Trajectory, record_trajectory
from sdprobe.progress import progress

__all__ = ["GuidanceSweep", "faithfulness_gain", "forward_chains", "forward_process_error", "guidance_sweep", "parting_steps",
           "variety", "variety_loss", "x0_settled"]


def forward_chains(x0: torch.Tensor, chains: int = 128) -> int:
    """How many chains :func:`forward_process_error` runs from ``x0``: ``chains``, or more for a
    small latent, so that ``chains · numel`` reaches 2**17."""
    return max(chains, -(-2**17 // x0.numel()))


@torch.no_grad()
def forward_process_error(scheduler: Any, x0: torch.Tensor, *, at: Sequence[int] = (250, 500, 750, 999),
                          chains: int = 128, seed: int = 0) -> float:
    """Run the forward process one step at a time, ``x_t = √(1−β_t) x_{t−1} + √β_t ε_t`` with the
    scheduler's ``betas``, over ``chains`` independent chains from ``x0`` (``[C, H, W]``), and
    compare the chains at the timesteps ``at`` with the one-jump form the pipelines use,
    ``x_t ~ N(√ᾱ_t x0, (1−ᾱ_t) I)`` with the scheduler's ``alphas_cumprod``.

    The process is linear in ``x0``, so ``x0`` is first scaled to unit root-mean-square: the
    regression is then as well conditioned for a near-zero latent (a random VAE's) as for a
    trained one. ``chains`` grows to at least ``2**17 / numel`` so that the sampling noise,
    about ``1/√(chains · numel)``, stays near 0.003 however small the latent.

    Returns:
        The largest absolute error, over ``at``, of the empirical mean coefficient (the chains'
        mean regressed on ``x0``) and of the empirical variance around ``√ᾱ_t x0``.
    """
    betas = scheduler.betas.double()
    if not all(0 <= t < len(betas) for t in at):
        raise ValueError(f"timesteps must lie in [0, {len(betas)}), got {list(at)}")
    gen = torch.Generator().manual_seed(seed)
    x0 = x0.double().flatten()
    rms = float(x0.pow(2).mean().sqrt())
    if not rms > 0:
        raise ValueError("x0 is all zeros: the forward process has no signal to follow")
    x0 = x0 / rms
    chains = forward_chains(x0, chains)
    x = x0.expand(chains, -1).clone()
    worst = 0.0
    for t, beta in enumerate(betas):
        x = (1 - beta).sqrt() * x + beta.sqrt() * torch.randn(x.shape, generator=gen, dtype=torch.float64)
        if t in at:
            abar = float(scheduler.alphas_cumprod[t])
            coef = float((x.mean(0) * x0).sum() / (x0 * x0).sum())
            variance = float((x - abar**0.5 * x0).pow(2).mean())
            worst = max(worst, abs(coef - abar**0.5), abs(variance - (1 - abar)))
    return worst


@dataclass
class GuidanceSweep:
    """Images of ``prompts`` × ``seeds`` at each guidance scale.

    Attributes:
        images: scale → ``P·S`` images, image ``p·S + s`` for prompt ``p`` and seed ``s``.
        correct: scale → the judge's verdict per image (empty without a judge).
        appearance: scale → what the judge sees that a seed can change, per image (colours and
            place; empty without a judge).
        trajectories: scale → the :class:`~sdprobe.probes.trajectory.Trajectory` of every batch
            at that scale, for the scales in ``record``.
    """

    prompts: list[str]
    seeds: int
    scales: list[float]
    images: dict[float, list[Image.Image]] = field(default_factory=dict)
    correct: dict[float, list[bool]] = field(default_factory=dict)
    appearance: dict[float, list[Any]] = field(default_factory=dict)
    trajectories: dict[float, list[Trajectory]] = field(default_factory=dict)

    @property
    def n(self) -> int:
        """Images per scale."""
        return len(self.prompts) * self.seeds


@torch.no_grad()
def guidance_sweep(pipe: Any, prompts: Sequence[StructuredPrompt | str], scales: Sequence[float], *, seeds: int = 4,
                   seed: int = 0, steps: int = 20, height: int | None = None, width: int | None = None, batch: int = 32,
                   judge: Judge | None = None, record: Sequence[float] = ()) -> GuidanceSweep:
    """Draw every prompt with ``seeds`` seeds at every scale, in batches of ``batch`` images.

    Args:
        prompts: structured prompts (:class:`~sdprobe.analysis.judges.StructuredPrompt`), or
            plain text when there is no ``judge``.
        judge: reads every image (:mod:`sdprobe.analysis.judges`): whether it shows its prompt
            and what a seed changed in it.
        record: scales whose denoising trajectories are kept (for :func:`x0_settled` and
            :func:`parting_steps`).
    """
    if seeds < 2:
        raise ValueError(f"variety needs at least two seeds per prompt, got {seeds}")
    asked = list(prompts)
    if judge is not None and not all(isinstance(p, StructuredPrompt) for p in asked):
        raise TypeError("a judged sweep takes StructuredPrompt prompts (what each asks for), not plain text")
    prompts = [p.text if isinstance(p, StructuredPrompt) else p for p in asked]
    jobs = [(p, s) for p in range(len(prompts)) for s in range(seeds)]
    sweep = GuidanceSweep(list(prompts), seeds, [float(s) for s in scales])
    for scale in progress(sweep.scales, desc="guidance scales"):
        images, trajs = [], []
        for i in range(0, len(jobs), batch):
            chunk = jobs[i:i + batch]
            kwargs = dict(num_inference_steps=steps, guidance_scale=scale, height=height, width=width,
                          generator=[torch.Generator().manual_seed(seed + s) for _, s in chunk])
            texts = [prompts[p] for p, _ in chunk]
            if scale in record:
                with record_trajectory(pipe) as traj:
                    images += pipe(texts, **kwargs).images
                trajs.append(traj)
            else:
                images += pipe(texts, **kwargs).images
        sweep.images[scale] = images
        if judge is not None:
            wanted = [asked[p] for p, _ in jobs]
            readings = judge.read(images, wanted)
            sweep.correct[scale] = [r.correct for r in readings]
            sweep.appearance[scale] = judge.appearance(images, wanted, readings=readings)
        if trajs:
            sweep.trajectories[scale] = trajs
    return sweep


def variety(sweep: GuidanceSweep, scale: float, describe: Callable[[Image.Image], Any] | None = None) -> np.ndarray:
    """Per prompt, how much the seed still changes the picture at ``scale``. ``[P]``

    With a judged sweep (or ``describe``, image → what it shows): the share of seed pairs whose
    pictures the judge sees differently (colours or place). Without either: the mean pixel
    distance between seed pairs (mean absolute difference over RGB, 0–255), which also grows
    with contrast, so it over-reads variety at high guidance.
    """
    out = []
    for p in range(len(sweep.prompts)):
        part = slice(p * sweep.seeds, (p + 1) * sweep.seeds)
        images = sweep.images[scale][part]
        if describe is not None or sweep.appearance.get(scale):
            seen = [describe(im) for im in images] if describe is not None else sweep.appearance[scale][part]
            out.append(np.mean([a != b for a, b in combinations(seen, 2)]))
        else:
            arrays = [np.asarray(im, dtype=np.float32) for im in images]
            out.append(np.mean([np.abs(a - b).mean() for a, b in combinations(arrays, 2)]))
    return np.asarray(out, dtype=np.float64)


def faithfulness_gain(sweep: GuidanceSweep, low: float, high: float) -> dict:
    """How many more images the judge passes at scale ``high`` than at ``low``, paired by
    (prompt, seed): ``{"low", "high"}`` (rates with intervals), ``"gain"`` (difference of rates,
    bootstrap interval over pairs) and ``"p"`` (exact McNemar test)."""
    a, b = sweep.correct[low], sweep.correct[high]
    if not a or not b:
        raise ValueError("the sweep was run without a judge")
    return {"low": rate(a), "high": rate(b), "gain": paired_difference(a, b), "p": mcnemar(a, b), "n": len(a)}


def variety_loss(sweep: GuidanceSweep, low: float, high: float,
                 describe: Callable[[Image.Image], Any] | None = None) -> dict:
    """How much less the seed changes the picture at ``high`` than at ``low``: per prompt, the
    drop in :func:`variety`; ``"loss"`` (mean drop, bootstrap interval over prompts), ``"p"``
    (exact sign test over prompts) and the two variety profiles."""
    v_low, v_high = variety(sweep, low, describe), variety(sweep, high, describe)
    return {"low": v_low, "high": v_high, "loss": paired_difference(v_high, v_low), "p": sign_test(v_low - v_high),
            "prompts": len(v_low)}


def x0_settled(trajectories: Sequence[Trajectory], *, within: float = 0.1) -> list[bool]:
    """Per image: does the predicted clean latent x̂0 of the last step lie within ``within`` of
    the first step's distance from the final latent? (x̂0 converging on the picture drawn.)"""
    out = []
    for traj in trajectories:
        final = traj.latents[-1]
        first = (traj.x0[0] - final).flatten(1).norm(dim=1)
        last = (traj.x0[-1] - final).flatten(1).norm(dim=1)
        out += (last <= within * first).tolist()
    return out


def parting_steps(trajectories: Sequence[Trajectory], prompts: int, seeds: int) -> np.ndarray:
    """For each seed and each pair of neighbouring prompts (``p``, ``p + 1`` cyclically), which
    share their starting noise: the first step after which the latents' gap reaches half its
    final size. ``[prompts · seeds]`` step indices (from 0)."""
    steps = len(trajectories[0])
    latents = [torch.cat([t.latent(i + 1) for t in trajectories]) for i in range(steps)]  # [steps] × [N, 4, h, w]
    out = []
    for p in range(prompts):
        q = (p + 1) % prompts
        for s in range(seeds):
            a, b = p * seeds + s, q * seeds + s
            gap = np.array([(x[a] - x[b]).abs().mean().item() for x in latents])
            out.append(int(np.argmax(gap >= gap[-1] / 2)))
    return np.asarray(out)
