"""Record U-Net intermediate features in one run and swap them into another (Yamada, ch. 04).

    with sdprobe.record_features(pipe, layers=["OUT3", "OUT4"]) as store:
        a = pipe(prompt_a, generator=torch.Generator().manual_seed(1111)).images[0]
    with sdprobe.swap_features(pipe, store, layers=["OUT3", "OUT4"], steps=range(0, 20)):
        b = pipe(prompt_b, generator=torch.Generator().manual_seed(1111)).images[0]

Run A's features are kept in a :class:`FeatureStore`; run B's are replaced by them at the chosen
layers and steps, either whole, inside a region (a boolean grid at the U-Net's lowest
resolution, the paper's 10×14 at 640×896, resized by nearest neighbour to each layer), or where
``|saved - current| < threshold``. One store serves any number of swap runs (a sweep never
re-runs A). The method is Yamada's ("Investigation of a Method to Ensure Consistency of
Generated Images Through Intermediate Representation Operations in U-Net"); the hooks are our own.

**Which tensor.** Layers are named as in :mod:`sdprobe.layers` (``IN8``, ``MID``, ``OUT3``…).
``feature="text"`` (the default) takes the output of the block's cross-attention
``Transformer2DModel`` (:attr:`Layer.text_module`), the paper's "intermediate representation"
of its 16 text-conditioned layers. ``feature="block"`` takes the whole LDM block's output
(:attr:`Layer.output_module`): after the upsampler for ``OUT2/5/8`` (twice the resolution),
after the second resnet for ``MID``; any layer can be used this way.

**Step numbering.** Steps are *scheduler steps*, counted from 0: step ``k`` is the ``k``-th
distinct timestep of ``pipe.scheduler.timesteps``. PNDM calls the U-Net ``steps + 1`` times (its
second timestep twice); both calls belong to step 1, and each is recorded and swapped from its
own saved tensor. The paper counts from 1: its "steps 1-20" are ``range(0, 20)`` here and "after
step 20" is ``range(20, 50)``.

**Guidance.** The stored tensor holds the whole U-Net batch, ``[uncond, cond]`` under
classifier-free guidance, so each half is replaced from its own saved half.

Everything is done with torch forward hooks (a pre-hook on the U-Net reads the timestep, one hook
per layer module records or replaces its output); they are removed when the ``with`` block ends,
also after an exception.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F

from .layers import Layer, layer_map, resolve_layers
from .models import model_label

__all__ = [
    "FeatureStore",
    "StoreMismatchError",
    "estimate_store_nbytes",
    "record_features",
    "swap_features",
]

Feature = Literal["text", "block"]
_FEATURES = ("text", "block")


class StoreMismatchError(ValueError):
    """A store cannot be swapped into this run: other model, size, batch, schedule or layers."""


# ----------------------------------------------------------------------------- the store


@dataclass
class FeatureStore:
    """Features recorded from one generation, keyed by layer and U-Net call.

    Attributes:
        model: :func:`~sdprobe.models.model_label` of the pipeline that recorded it.
        unet_fingerprint: hash of the U-Net config (another architecture is refused).
        feature: ``"text"`` or ``"block"`` (see the module docstring).
        layers: recorded layer names, in the order asked for.
        steps: recorded scheduler steps, sorted; ``None`` until the run starts if all were asked.
        device: where the tensors are kept (``None``: where the U-Net computed them).
        dtype: their dtype (``None``: the U-Net's).
        timesteps: ``[n_calls]`` the timestep of every U-Net call of the recorded run (CPU).
        sample_shape: the U-Net input shape ``(B, C, h, w)``; ``B`` is doubled under guidance.
        features: ``(layer, call) -> [B, C_l, h_l, w_l]`` tensors.
    """

    model: str
    unet_fingerprint: str
    feature: Feature
    layers: tuple[str, ...]
    steps: tuple[int, ...] | None
    device: torch.device | None = None
    dtype: torch.dtype | None = None
    timesteps: torch.Tensor | None = None
    sample_shape: tuple[int, ...] | None = None
    levels: int = 1
    features: dict[tuple[str, int], torch.Tensor] = field(default_factory=dict, repr=False)

    @property
    def num_steps(self) -> int:
        """Scheduler steps of the recorded run (distinct timesteps)."""
        return len(_step_of_call(self._require_run().timesteps)[1])

    @property
    def nbytes(self) -> int:
        """Bytes held by the stored tensors."""
        return sum(t.numel() * t.element_size() for t in self.features.values())

    @property
    def lowest_resolution(self) -> tuple[int, int]:
        """``(H, W)`` of the U-Net's lowest level (the ``MID`` features): the region grid's shape."""
        h, w = self._require_run().sample_shape[-2:]
        for _ in range(self.levels - 1):  # stride-2 convolutions with padding 1 round up
            h, w = math.ceil(h / 2), math.ceil(w / 2)
        return h, w

    def calls(self, step: int) -> list[int]:
        """U-Net call indices that belong to scheduler step ``step`` (two for PNDM's step 1)."""
        step_of, _ = _step_of_call(self._require_run().timesteps)
        return [i for i, s in enumerate(step_of) if s == step]

    def get(self, layer: str, step: int, occurrence: int = 0) -> torch.Tensor:
        """The saved ``[B, C, h, w]`` feature of ``layer`` at ``step`` (its ``occurrence``-th U-Net call)."""
        calls = self.calls(step)
        if layer not in self.layers or not calls or (layer, calls[0]) not in self.features:
            raise KeyError(f"no feature for layer {layer!r} at step {step}; this store holds {self.describe()}")
        return self.features[layer, calls[occurrence]]

    def describe(self) -> str:
        """One line: layers, steps, size in MiB."""
        steps = _ranges(self.steps) if self.steps is not None else "all steps"
        return f"{', '.join(self.layers) or 'no layers'} at steps {steps} ({self.nbytes / 2**20:.1f} MiB)"

    def _require_run(self) -> FeatureStore:
        if self.timesteps is None or self.sample_shape is None:
            raise ValueError("this store is empty: run the pipeline inside `with record_features(pipe) as store:`")
        return self


def _unet_fingerprint(unet: torch.nn.Module) -> str:
    config = {k: v for k, v in dict(unet.config).items() if not k.startswith("_")}
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- argument checks


def _check_feature(feature: str) -> Feature:
    if feature not in _FEATURES:
        raise ValueError(f"feature must be one of {', '.join(map(repr, _FEATURES))}, not {feature!r}")
    return feature  # type: ignore[return-value]


def _resolve(unet: torch.nn.Module, layers: Iterable[str] | str | None, feature: Feature) -> list[Layer]:
    """Layers by name; ``None`` means every text-conditioned layer."""
    if layers is None:
        return [layer for layer in layer_map(unet).values() if layer.is_text]
    return resolve_layers(unet, layers, text_only=feature == "text")


def _module_path(layer: Layer, feature: Feature) -> str:
    return layer.text_module if feature == "text" else layer.output_module  # type: ignore[return-value]


def _normalize_steps(steps: Iterable[int] | int | None) -> tuple[int, ...] | None:
    if steps is None:
        return None
    values = [steps] if isinstance(steps, int) else list(steps)
    bad = [s for s in values if isinstance(s, bool) or not isinstance(s, int) or s < 0]
    if bad:
        raise ValueError(f"steps must be non-negative integers (scheduler steps counted from 0), got {bad[:5]}")
    return tuple(sorted(set(values)))


def _check_in_schedule(steps: Sequence[int], num_steps: int, what: str) -> None:
    outside = [s for s in steps if s >= num_steps]
    if outside:
        raise ValueError(
            f"steps {_ranges(outside)} are outside the schedule of {what}: it has {num_steps} scheduler "
            f"steps, numbered 0-{num_steps - 1} (the paper's step k is k-1 here)"
        )


def _ranges(values: Iterable[int]) -> str:
    """``[0, 1, 2, 5]`` → ``"0-2, 5"``."""
    values = sorted(values)
    if not values:
        return "none"
    parts, start = [], values[0]
    for prev, cur in zip(values, values[1:] + [None]):
        if cur != prev + 1:
            parts.append(f"{start}-{prev}" if prev > start else f"{start}")
            start = cur
    return ", ".join(parts)


# ----------------------------------------------------------------------------- the step clock


def _step_of_call(timesteps: torch.Tensor) -> tuple[list[int], list[float]]:
    """Scheduler step of every U-Net call: the rank of its timestep among the distinct ones."""
    distinct: list[float] = []
    step_of = []
    for t in timesteps.tolist():
        if t not in distinct:
            distinct.append(t)
        step_of.append(distinct.index(t))
    return step_of, distinct


class _StepClock:
    """U-Net forward pre-hook: which call of ``scheduler.timesteps`` is running, and its step.

    The call index advances through the schedule and restarts when a new generation begins,
    so repeated timesteps (PNDM, Heun) map to consecutive calls.
    """

    def __init__(self, scheduler: Any, on_start: Callable[[torch.Tensor, torch.Tensor], None]) -> None:
        self.scheduler = scheduler
        self.on_start = on_start  # called at a generation's first U-Net call
        self.call = -1
        self.step = -1
        self._timesteps: torch.Tensor | None = None
        self._step_of: list[int] = []

    def __call__(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        sample = args[0] if args else kwargs["sample"]
        t = args[1] if len(args) > 1 else kwargs["timestep"]
        timesteps = self.scheduler.timesteps.detach().cpu()
        if self._timesteps is None or not torch.equal(timesteps, self._timesteps):
            self._timesteps, self._step_of = timesteps, _step_of_call(timesteps)[0]
            self.call = -1
        t = float(t.flatten()[0]) if torch.is_tensor(t) else float(t)
        nxt = self.call + 1
        if not (nxt < len(timesteps) and float(timesteps[nxt]) == t):
            matches = (timesteps == t).nonzero().flatten().tolist()
            if not matches:
                raise RuntimeError(
                    f"the U-Net was called at timestep {t}, which is not in pipe.scheduler.timesteps; "
                    "feature swaps need a text-to-image pipeline that runs the scheduler's schedule"
                )
            nxt = matches[0]
        first = nxt == 0 or self.call == -1
        self.call, self.step = nxt, self._step_of[nxt]
        if first:
            self.on_start(timesteps, sample)


def _output_tensor(output: Any) -> torch.Tensor:
    """The hidden states in a module's output (a tensor, a ``(tensor, ...)`` tuple or a ``.sample``)."""
    if torch.is_tensor(output):
        return output
    if isinstance(output, (tuple, list)):
        return output[0]
    return output.sample


def _replace_output(output: Any, hidden: torch.Tensor) -> Any:
    if torch.is_tensor(output):
        return hidden
    if isinstance(output, (tuple, list)):
        return (hidden, *output[1:])
    output.sample = hidden
    return output


@contextmanager
def _hooks(pipe: Any, clock: _StepClock, layer_hooks: dict[str, Callable]) -> Iterator[None]:
    """Install the clock and one forward hook per module path; remove them all on exit."""
    unet = pipe.unet
    handles = [unet.register_forward_pre_hook(clock, with_kwargs=True)]
    try:
        for path, hook in layer_hooks.items():
            handles.append(unet.get_submodule(path).register_forward_hook(hook))
        yield
    finally:
        for handle in handles:
            handle.remove()


# ----------------------------------------------------------------------------- recording


@contextmanager
def record_features(
    pipe: Any,
    layers: Iterable[str] | str | None = None,
    *,
    steps: Iterable[int] | int | None = None,
    feature: Feature = "text",
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> Iterator[FeatureStore]:
    """Record ``layers`` × ``steps`` of the one generation run inside the block.

    Args:
        pipe: a Stable Diffusion (1.x, 2.x, XL) text-to-image pipeline.
        layers: LDM layer names (``"IN8"``, ``"MID"``, ``"OUT3"``…); ``None``: all text-conditioned layers.
        steps: scheduler steps to keep, from 0; ``None``: all. Checked against the run's schedule
            at its first U-Net call.
        feature: ``"text"`` (cross-attention module output) or ``"block"`` (whole block output).
        device: where to keep the tensors, e.g. ``"cpu"`` to spare GPU memory; ``None``: where computed.
        dtype: e.g. ``torch.float16`` to halve the size; ``None``: the U-Net's dtype (exact swaps).

    Yields:
        The :class:`FeatureStore`, filled while the pipeline runs.

    Raises:
        UnknownLayerError: a layer this U-Net does not have (the message lists the valid names).
        ValueError: bad ``steps`` or ``feature``; steps beyond the run's schedule; a second
            generation inside the same block.
    """
    feature = _check_feature(feature)
    chosen = _resolve(pipe.unet, layers, feature)
    store = FeatureStore(
        model=model_label(pipe),
        unet_fingerprint=_unet_fingerprint(pipe.unet),
        feature=feature,
        layers=tuple(layer.name for layer in chosen),
        steps=_normalize_steps(steps),
        device=torch.device(device) if device is not None else None,
        dtype=dtype,
        levels=len(pipe.unet.config.block_out_channels),
    )

    def on_start(timesteps: torch.Tensor, sample: torch.Tensor) -> None:
        if store.timesteps is not None:
            raise ValueError("record_features records one generation; open a new `with` block for the next")
        num_steps = len(_step_of_call(timesteps)[1])
        if store.steps is None:
            store.steps = tuple(range(num_steps))
        _check_in_schedule(store.steps, num_steps, "this run")
        store.timesteps, store.sample_shape = timesteps.clone(), tuple(sample.shape)

    clock = _StepClock(pipe.scheduler, on_start)

    def make_hook(name: str) -> Callable:
        def hook(module: torch.nn.Module, args: tuple, output: Any) -> None:
            if clock.step in store.steps:
                hidden = _output_tensor(output).detach()
                store.features[name, clock.call] = hidden.to(
                    device=store.device or hidden.device, dtype=store.dtype or hidden.dtype, copy=True
                )

        return hook

    with _hooks(pipe, clock, {_module_path(layer, feature): make_hook(layer.name) for layer in chosen}):
        yield store


# ----------------------------------------------------------------------------- swapping


@contextmanager
def swap_features(
    pipe: Any,
    store: FeatureStore,
    layers: Iterable[str] | str | None = None,
    *,
    steps: Iterable[int] | int | None = None,
    region: Any = None,
    threshold: float | None = None,
) -> Iterator[None]:
    """Replace this run's features by ``store``'s at ``layers`` × ``steps``.

    With neither ``region`` nor ``threshold`` the whole feature map is replaced. With both, an
    element is replaced where both select it. ``store`` is only read, so one store serves a sweep.

    Args:
        pipe: the pipeline ``store`` was recorded with (same model, size, batch, scheduler, steps).
        store: from :func:`record_features`.
        layers: names to swap, a subset of ``store.layers``; ``None``: all recorded layers; ``[]``: none.
        steps: scheduler steps to swap (from 0), a subset of ``store.steps``; ``None``: all recorded.
        region: ``[H, W]`` boolean grid at the lowest U-Net resolution (``store.lowest_resolution``),
            True where A's features are taken; resized by nearest neighbour to each layer.
        threshold: replace only elements with ``|saved - current| < threshold``.

    Raises:
        UnknownLayerError: a name this U-Net does not have.
        StoreMismatchError: the store comes from another model, holds other layers or steps, or
            (at the first U-Net call) was recorded at another size, batch or schedule.
        ValueError: bad ``steps``, ``region`` or ``threshold``.
    """
    _check_store_model(pipe, store)
    store._require_run()
    chosen = [layer.name for layer in _resolve(pipe.unet, layers, store.feature)] if layers is not None else list(store.layers)
    missing = [name for name in chosen if name not in store.layers]
    if missing:
        raise StoreMismatchError(f"layers {', '.join(missing)} were not recorded; this store holds {store.describe()}")
    wanted = _normalize_steps(steps) if steps is not None else store.steps
    _check_in_schedule(wanted, store.num_steps, f"the recorded run ({store.model})")
    unrecorded = [s for s in wanted if s not in store.steps]
    if unrecorded:
        raise StoreMismatchError(f"steps {_ranges(unrecorded)} were not recorded; this store holds {store.describe()}")
    grid = _check_region(region, store.lowest_resolution) if region is not None else None
    if threshold is not None and not (isinstance(threshold, (int, float)) and threshold > 0):
        raise ValueError(f"threshold must be a positive number, not {threshold!r}")

    def on_start(timesteps: torch.Tensor, sample: torch.Tensor) -> None:
        _check_store_run(store, timesteps, tuple(sample.shape))

    clock = _StepClock(pipe.scheduler, on_start)
    active = set(wanted)

    def make_hook(name: str) -> Callable:
        masks: dict[tuple[int, int], torch.Tensor] = {}  # the region resized, per layer size

        def hook(module: torch.nn.Module, args: tuple, output: Any) -> Any:
            if clock.step not in active:
                return None
            current = _output_tensor(output)
            saved = store.features[name, clock.call].to(device=current.device, dtype=current.dtype, copy=True)
            if saved.shape != current.shape:  # e.g. a different batch of prompts
                raise StoreMismatchError(
                    f"{name}: saved features are {tuple(saved.shape)}, this run computes {tuple(current.shape)}"
                )
            take = _selection(saved, current, grid, threshold, masks)
            return _replace_output(output, saved if take is None else torch.where(take, saved, current))

        return hook

    paths = {_module_path(layer, store.feature): make_hook(layer.name) for layer in resolve_layers(pipe.unet, chosen)}
    if not active:
        paths = {}
    with _hooks(pipe, clock, paths):
        yield


def _selection(
    saved: torch.Tensor,
    current: torch.Tensor,
    grid: torch.Tensor | None,
    threshold: float | None,
    cache: dict[tuple[int, int], torch.Tensor],
) -> torch.Tensor | None:
    """Boolean mask broadcastable to ``[B, C, h, w]``, True where the saved value is taken; None: all."""
    take = None
    if grid is not None:
        size = tuple(current.shape[-2:])
        if size not in cache:
            cache[size] = F.interpolate(grid[None, None].float(), size=size, mode="nearest").bool()
        take = cache[size].to(current.device)
    if threshold is not None:
        close = (saved - current).abs() < threshold
        take = close if take is None else take & close
    return take


def _check_region(region: Any, shape: tuple[int, int]) -> torch.Tensor:
    grid = torch.as_tensor(region).detach().cpu()
    if grid.dtype != torch.bool:
        if grid.is_floating_point() or grid.is_complex() or not bool(((grid == 0) | (grid == 1)).all()):
            raise ValueError(f"region must be a boolean grid (or 0/1 integers), got dtype {grid.dtype}")
        grid = grid.bool()
    if tuple(grid.shape) != shape:
        raise ValueError(
            f"region must be a [H, W] = {list(shape)} grid (the lowest U-Net resolution of the recorded run), "
            f"got shape {list(grid.shape)}"
        )
    return grid


def _check_store_model(pipe: Any, store: FeatureStore) -> None:
    if not isinstance(store, FeatureStore):
        raise TypeError(f"store must be a FeatureStore from record_features, not {type(store).__name__}")
    if store.unet_fingerprint != _unet_fingerprint(pipe.unet) or store.model != model_label(pipe):
        raise StoreMismatchError(
            f"this store was recorded with {store.model!r}; the pipeline is {model_label(pipe)!r}"
            + ("" if store.unet_fingerprint == _unet_fingerprint(pipe.unet) else " with another U-Net architecture")
        )


def _check_store_run(store: FeatureStore, timesteps: torch.Tensor, sample_shape: tuple[int, ...]) -> None:
    if sample_shape != store.sample_shape:
        raise StoreMismatchError(
            f"the store was recorded with U-Net input {list(store.sample_shape)} (batch, channels, latent h, w), "
            f"this run has {list(sample_shape)}: use the same height, width, batch and guidance on/off"
        )
    if not torch.equal(timesteps, store.timesteps):
        raise StoreMismatchError(
            f"the store was recorded with {store.num_steps} steps of timesteps {store.timesteps.tolist()[:4]}…, "
            f"this run's schedule differs ({len(timesteps)} U-Net calls): use the same scheduler and num_inference_steps"
        )


# ----------------------------------------------------------------------------- sizing


def estimate_store_nbytes(
    unet_or_config: Any,
    layers: Iterable[str] | str | None = None,
    *,
    height: int,
    width: int,
    n_calls: int,
    batch: int = 2,
    feature: Feature = "text",
    dtype: torch.dtype = torch.float16,
    vae_scale: int = 8,
) -> int:
    """Bytes a store of ``layers`` over ``n_calls`` U-Net calls will take, from the config alone.

    ``batch`` is the U-Net batch (2 for one image with guidance). Example: SD 1.x, all 16 text
    layers, 50 calls at 640×896 in fp16: ``5,053,440,000`` bytes (4.7 GiB).
    """
    feature = _check_feature(feature)
    cfg = dict(getattr(unet_or_config, "config", unet_or_config))
    table = layer_map(cfg)
    names = [n for n, layer in table.items() if layer.is_text] if layers is None else [
        layer.name for layer in resolve_layers(cfg, layers, text_only=feature == "text")
    ]
    channels = list(cfg["block_out_channels"])
    per_call = 0
    for name in names:
        c, h, w = _feature_shape(table[name], feature, channels, height // vae_scale, width // vae_scale)
        per_call += batch * c * h * w
    return per_call * n_calls * torch.finfo(dtype).bits // 8


def _feature_shape(layer: Layer, feature: Feature, channels: list[int], h: int, w: int) -> tuple[int, int, int]:
    """``(C, h, w)`` of a layer's recorded feature for a latent of ``h × w``."""
    path = _module_path(layer, feature)
    levels = len(channels)
    if path.startswith("down_blocks") or path == "conv_in":
        level = int(path.split(".")[1]) if path != "conv_in" else 0
        halvings = level + (1 if ".downsamplers." in path else 0)
        c = channels[level]
    elif path.startswith("up_blocks"):
        level = int(path.split(".")[1])
        halvings = levels - 1 - level - (1 if ".upsamplers." in path else 0)
        c = channels[levels - 1 - level]
    else:  # mid_block
        halvings, c = levels - 1, channels[-1]
    for _ in range(halvings):
        h, w = math.ceil(h / 2), math.ceil(w / 2)
    return c, h, w
