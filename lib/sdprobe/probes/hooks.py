"""The one hook layer, in two tiers: how every probe attaches to a model, counts its steps and lets go.

**ModuleHooks** is the lower tier: processors and hooks on one module and its submodules, with
targets addressed by module, by diffusers path or, on a U-Net, by the papers' LDM block names::

    with ModuleHooks(unet, "my probe") as hooks:
        hooks.processor(attn_module, MyProcessor())     # diffusers' Attention.set_processor
        hooks.forward_hook("OUT4", after_block)         # the block's output module
        hooks.pre_hook("up_blocks.1", before_level)     # a diffusers path
        unet(sample, t, context)

**PipelineHooks** adds a :class:`StepClock` on the pipeline's U-Net and text encoders, which
numbers the steps and publishes what a probe needs to know of the generation: each new pipeline
call, each step (with its timestep and the U-Net's inputs) and each text-encoder run::

    with PipelineHooks(pipe, "my probe") as hooks:
        hooks.clock.subscribe(step=lambda step, t, args, kwargs: ...)
        image = pipe(prompt).images[0]
        hooks.clock.step                                # the step running (or last run)

Everything registered is removed, newest first, when the block ends, also after an exception
or a KeyboardInterrupt. Blocks nest: each removes only what it registered.

**Steps: one convention for the whole library.** A *step* is one call of the U-Net, numbered
from 0 within one pipeline call. For every scheduler the number of steps is
``num_inference_steps``, except PNDM (SD 1.x's default), which calls the U-Net once more (its
second timestep twice). Step ``k`` denoises the latent that ``k`` steps have produced, so the
starting noise x_T is the input of step 0, and "after ``k`` steps" means before step ``k``.
Papers that count from 1 call our step ``k`` their step ``k + 1``.

**One pipeline call per block.** A probe records one generation. A second pipeline call inside
the same block raises :class:`SecondCallError` (the message says what to do), unless the probe
was asked to record several (``several=True``); the clock's ``call`` event marks the start of
each. A new call is recognised when the text encoder runs after the U-Net has, or when the
timestep does not go down (beyond the repeats the scheduler's own schedule holds).

**Private attributes.** sdprobe touches two private attributes of a diffusers pipeline, each in
one place here with a test that fails if diffusers changes it: ``pipe._interrupt``, diffusers'
documented way to stop a generation early from ``callback_on_step_end`` (:func:`stop_after`),
and ``pipe._execution_device``, where a pipeline with offloaded models runs
(:func:`execution_device`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import torch

from sdprobe.models.layers import resolve_layers

__all__ = ["ModuleHooks", "PipelineHooks", "SecondCallError", "StepClock", "execution_device", "stop_after",
           "timestep_of"]


class SecondCallError(RuntimeError):
    """A probe that records one pipeline call saw a second one inside its ``with`` block."""


def timestep_of(args: tuple, kwargs: dict) -> float:
    """The timestep a U-Net forward was called with (its second argument, or ``timestep=``)."""
    t = args[1] if len(args) > 1 else kwargs["timestep"]
    return float(t.flatten()[0]) if torch.is_tensor(t) else float(t)


def unet_of(pipe: Any, probe: str) -> torch.nn.Module:
    """The pipeline's ``UNet2DConditionModel``; a one-line ``TypeError`` for anything else."""
    unet = getattr(pipe, "unet", None)
    if unet is None or not hasattr(unet, "attn_processors"):
        raise TypeError(f"{probe} needs a pipeline with a UNet2DConditionModel, not {type(pipe).__name__}")
    return unet



class ModuleHooks:
    """Register processors and hooks on ``module`` and its submodules; remove everything on exit.

    Args:
        module: the model the probe attaches to (a U-Net, a text encoder, a VAE).
        probe: the probe's name, for error messages.
    """

    def __init__(self, module: torch.nn.Module, probe: str) -> None:
        self.module, self.probe = module, probe
        self._undo: list[Callable[[], None]] = []
        self._open = False

    def __enter__(self) -> ModuleHooks:
        self._open = True
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def target(self, where: torch.nn.Module | str, *, part: Literal["block", "text"] = "block") -> torch.nn.Module:
        """The module ``where`` names: a module itself, a diffusers path under ``self.module``
        (``"up_blocks.1.attentions.0"``) or, on a U-Net, an LDM block name (``"OUT4"``): the module
        whose output is the block's (``part="block"``) or its cross-attention transformer
        (``part="text"``).

        Raises:
            UnknownLayerError: a block name this U-Net does not have (the message lists them).
        """
        if isinstance(where, torch.nn.Module):
            return where
        if "." in where or where in dict(self.module.named_children()):
            return self.module.get_submodule(where)
        layer = resolve_layers(self.module, [where], text_only=part == "text")[0]
        return self.module.get_submodule(layer.text_module if part == "text" else layer.output_module)

    def processor(self, where: torch.nn.Module | str, processor: Any) -> None:
        """Give an ``Attention`` module another processor until the block ends."""
        self._check_open()
        module = self.target(where)
        original = module.processor
        module.set_processor(processor)
        self._undo.append(lambda: module.set_processor(original))

    def pre_hook(self, where: torch.nn.Module | str, fn: Callable[..., Any]) -> None:
        """``fn(module, args, kwargs)`` before every forward of the module (may return new inputs)."""
        self._check_open()
        self._undo.append(self.target(where).register_forward_pre_hook(fn, with_kwargs=True).remove)

    def forward_hook(self, where: torch.nn.Module | str, fn: Callable[..., Any]) -> None:
        """``fn(module, args, output)`` after every forward of the module (may return a new output)."""
        self._check_open()
        self._undo.append(self.target(where).register_forward_hook(fn).remove)

    def close(self) -> None:
        """Remove everything registered, newest first (idempotent)."""
        while self._undo:
            self._undo.pop()()
        self._open = False

    def _check_open(self) -> None:
        if not self._open:
            raise RuntimeError(f"{self.probe}: register hooks inside the `with {type(self).__name__}(...)` block")


class StepClock:
    """Numbers the U-Net calls of the pipeline calls made while it is installed, and tells the
    probes that subscribe (:meth:`subscribe`) when a call starts, a step runs or a prompt is encoded.

    Attributes:
        step: the step now running or last run (``-1`` before the first); see the module docstring.
        timesteps: the timestep of every step of the current pipeline call.
        calls: how many pipeline calls have started.
        scheduler: the scheduler the current pipeline call started with.
    """

    def __init__(self, pipe: Any, probe: str, *, several: bool = False) -> None:
        self.pipe, self.probe, self.several = pipe, probe, several
        self.step = -1
        self.timesteps: list[float] = []
        self.calls = 0
        self.scheduler: Any = None
        self._unet_since_encode = True  # the first encoding of the block starts a call's prompts
        self._listeners: dict[str, list[Callable[..., None]]] = {"call": [], "step": [], "encode": []}

    def subscribe(self, *, call: Callable[[int], None] | None = None,
                  step: Callable[[int, float, tuple, dict], None] | None = None,
                  encode: Callable[[torch.nn.Module, tuple, dict, bool], None] | None = None) -> None:
        """Be told, in the order of subscription:

        * ``call(number)``: a pipeline call starts (numbered from 1), before its first step;
        * ``step(step, timestep, args, kwargs)``: a U-Net call starts, with its inputs;
        * ``encode(encoder, args, kwargs, first)``: a text encoder runs; ``first`` when it is the
          first encoding since the U-Net last ran (the prompt of a new call, not its negative).
        """
        for event, fn in (("call", call), ("step", step), ("encode", encode)):
            if fn is not None:
                self._listeners[event].append(fn)

    def before_text_encoder(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        first, self._unet_since_encode = self._unet_since_encode, False
        for fn in self._listeners["encode"]:
            fn(module, args, kwargs, first)

    def before_unet(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        t = timestep_of(args, kwargs)
        if self._starts_new_call(t):
            self.calls += 1
            if self.calls > 1 and not self.several:
                raise SecondCallError(
                    f"{self.probe} records one pipeline call, and a second one started inside its `with` block; "
                    "make each call in its own block, or ask the probe for several calls (several=True)")
            self.step, self.timesteps, self.scheduler = -1, [], self.pipe.scheduler
            for fn in self._listeners["call"]:
                fn(self.calls)
        self._unet_since_encode = True
        self.step += 1
        self.timesteps.append(t)
        for fn in self._listeners["step"]:
            fn(self.step, t, args, kwargs)

    def _starts_new_call(self, t: float) -> bool:
        # a prompt encoded since the last step: the encoding that opens a new call
        if not self.timesteps or not self._unet_since_encode or t > self.timesteps[-1]:
            return True
        if t < self.timesteps[-1]:
            return False
        schedule = getattr(self.pipe.scheduler, "timesteps", None)  # PNDM and Heun repeat timesteps
        allowed = int((torch.as_tensor(schedule).float() == t).sum()) if schedule is not None else 1
        return self.timesteps.count(t) >= max(1, allowed)


class PipelineHooks(ModuleHooks):
    """:class:`ModuleHooks` on a pipeline's U-Net, with a :class:`StepClock` that sees every
    U-Net and text-encoder call; everything is removed on exit. See the module docstring.

    Args:
        pipe: a diffusers pipeline with a ``unet`` (and usually a ``text_encoder``).
        probe: the probe's name, for error messages.
        several: allow more than one pipeline call inside the block.
    """

    def __init__(self, pipe: Any, probe: str, *, several: bool = False) -> None:
        super().__init__(unet_of(pipe, probe), probe)
        self.pipe = pipe
        self.clock = StepClock(pipe, probe, several=several)

    def __enter__(self) -> PipelineHooks:
        super().__enter__()
        try:
            self.pre_hook(self.pipe.unet, self.clock.before_unet)
            for encoder in (getattr(self.pipe, "text_encoder", None), getattr(self.pipe, "text_encoder_2", None)):
                if encoder is not None:
                    self.pre_hook(encoder, self.clock.before_text_encoder)
        except BaseException:
            self.close()
            raise
        return self


@contextmanager
def stop_after(pipe: Any, steps: int) -> Iterator[Callable[..., dict]]:
    """Yield a ``callback_on_step_end`` that stops the pipeline once ``steps`` steps are done.

    diffusers runs the callback after each step and checks ``pipe._interrupt`` at the top of the
    next; setting it is the library's documented way to stop early (the only private attribute
    sdprobe sets). The remaining steps are skipped and the pipeline returns what it has; the flag
    is cleared when the block ends, so no stopped pipeline is left behind.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer to stop after them, not {steps!r}")

    def callback(p: Any, i: int, t: Any, kwargs: dict) -> dict:
        if i + 1 >= steps:
            p._interrupt = True
        return kwargs

    try:
        yield callback
    finally:
        pipe._interrupt = False


def execution_device(pipe: Any) -> torch.device:
    """The device a pipeline runs its models on (where inputs must go), also with model offloading:
    diffusers' ``_execution_device``, read in this one place."""
    return pipe._execution_device
