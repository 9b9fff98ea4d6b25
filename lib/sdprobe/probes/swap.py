"""Record U-Net intermediate features in one run and swap them into another (Yamada, ch. 04).

Example::

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

**Which tensor.** Layers are named as in :mod:`sdprobe.models.layers` (``IN8``, ``MID``, ``OUT3``…).
``feature="text"`` (the default) takes the output of the block's cross-attention
``Transformer2DModel`` (:attr:`Layer.text_module`), the paper's "intermediate representation"
of its 16 text-conditioned layers. ``feature="block"`` takes the whole LDM block's output
(:attr:`Layer.output_module`): after the upsampler for ``OUT2/5/8`` (twice the resolution),
after the second resnet for ``MID``; any layer can be used this way.

**Step numbering.** Steps follow the library's convention (:mod:`sdprobe.probes.hooks`): U-Net calls,
counted from 0 within a pipeline call (PNDM calls the U-Net ``steps + 1`` times, every other
scheduler ``steps`` times). The paper counts from 1: its "steps 1-20" are ``range(0, 20)`` here
and "after step 20" is ``range(20, 50)``.

**Guidance.** The stored tensor holds the whole U-Net batch, ``[uncond, cond]`` under
classifier-free guidance, so each half is replaced from its own saved half.

Everything is attached through :class:`~sdprobe.probes.hooks.PipelineHooks` (its clock numbers the steps,
one forward hook per layer module records or replaces its output) and removed when the ``with``
block ends, also after an exception. One generation per block. A swap checks, at every step, that
the timestep is the one recorded at that step: a run with another schedule, a scheduler replaced
inside the block included, stops with :class:`StoreMismatchError`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F

from sdprobe.probes.hooks import PipelineHooks
from sdprobe.models.layers import Layer, layer_map, resolve_layers
from sdprobe.models import model_label, unet_fingerprint

__all__ = [
    "FeatureStore",
    "StoreMismatchError",
    "estimate_store_nbytes",
    "record_features",
    "region_at",
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
        steps: recorded steps (U-Net calls), sorted; ``None`` until the run starts if all were asked.
        device: where the tensors are kept (``None``: where the U-Net computed them).
        dtype: their dtype (``None``: the U-Net's).
        timesteps: ``[n_steps]`` the timestep of every step of the recorded run (CPU).
        scheduler: the class of the scheduler that ran it (DDIM, Euler and LMS share timesteps).
        sample_shape: the U-Net input shape ``(B, C, h, w)``; ``B`` is doubled under guidance.
        features: ``(layer, step) -> [B, C_l, h_l, w_l]`` tensors.
    """

    model: str
    unet_fingerprint: str
    feature: Feature
    layers: tuple[str, ...]
    steps: tuple[int, ...] | None
    device: torch.device | None = None
    dtype: torch.dtype | None = None
    timesteps: torch.Tensor | None = None
    scheduler: str | None = None
    sample_shape: tuple[int, ...] | None = None
    levels: int = 1
    features: dict[tuple[str, int], torch.Tensor] = field(default_factory=dict, repr=False)

    @property
    def num_steps(self) -> int:
        """Steps (U-Net calls) of the recorded run."""
        return len(self._require_run().timesteps)

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

    def get(self, layer: str, step: int) -> torch.Tensor:
        """The saved ``[B, C, h, w]`` feature of ``layer`` at ``step``."""
        if (layer, step) not in self.features:
            raise KeyError(f"no feature for layer {layer!r} at step {step}; this store holds {self.describe()}")
        return self.features[layer, step]

    def describe(self) -> str:
        """One line: layers, steps, size in MiB."""
        steps = _ranges(self.steps) if self.steps is not None else "all steps"
        return f"{', '.join(self.layers) or 'no layers'} at steps {steps} ({self.nbytes / 2**20:.1f} MiB)"

    def _require_run(self) -> FeatureStore:
        if self.timesteps is None or self.sample_shape is None:
            raise ValueError("this store is empty: run the pipeline inside `with record_features(pipe) as store:`")
        return self


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
        raise ValueError(f"steps must be non-negative integers (U-Net calls counted from 0), got {bad[:5]}")
    return tuple(sorted(set(values)))


def _check_in_schedule(steps: Sequence[int], num_steps: int, what: str) -> None:
    outside = [s for s in steps if s >= num_steps]
    if outside:
        raise ValueError(
            f"steps {_ranges(outside)} are outside the schedule of {what}: it has {num_steps} "
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


# ----------------------------------------------------------------------------- outputs


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
        steps: steps (U-Net calls) to keep, from 0; ``None``: all. Checked against the run's
            schedule at its first step.
        feature: ``"text"`` (cross-attention module output) or ``"block"`` (whole block output).
        device: where to keep the tensors, e.g. ``"cpu"`` to spare GPU memory; ``None``: where computed.
        dtype: e.g. ``torch.float16`` to halve the size; ``None``: the U-Net's dtype (exact swaps).

    Yields:
        The :class:`FeatureStore`, filled while the pipeline runs.

    Raises:
        UnknownLayerError: a layer this U-Net does not have (the message lists the valid names).
        ValueError: bad ``steps`` or ``feature``; steps beyond the run's schedule.
        SecondCallError: a second generation inside the same block.
    """
    feature = _check_feature(feature)
    chosen = _resolve(pipe.unet, layers, feature)
    store = FeatureStore(
        model=model_label(pipe),
        unet_fingerprint=unet_fingerprint(pipe.unet),
        feature=feature,
        layers=tuple(layer.name for layer in chosen),
        steps=_normalize_steps(steps),
        device=torch.device(device) if device is not None else None,
        dtype=dtype,
        levels=len(pipe.unet.config.block_out_channels),
    )

    def at_step(step: int, t: float, args: tuple, kwargs: dict) -> None:
        if step == 0:  # the schedule and the input shape are known at the first step
            timesteps = torch.as_tensor(hooks.clock.scheduler.timesteps).detach().float().cpu()
            if store.steps is None:
                store.steps = tuple(range(len(timesteps)))
            _check_in_schedule(store.steps, len(timesteps), "this run")
            sample = args[0] if args else kwargs["sample"]
            store.timesteps, store.sample_shape = timesteps.clone(), tuple(sample.shape)
            store.scheduler = type(hooks.clock.scheduler).__name__

    def make_hook(name: str) -> Callable:
        def hook(module: torch.nn.Module, args: tuple, output: Any) -> None:
            if hooks.clock.step in store.steps:
                hidden = _output_tensor(output).detach()
                store.features[name, hooks.clock.step] = hidden.to(
                    device=store.device or hidden.device, dtype=store.dtype or hidden.dtype, copy=True
                )

        return hook

    with PipelineHooks(pipe, "record_features") as hooks:
        hooks.clock.subscribe(step=at_step)
        for layer in chosen:
            hooks.forward_hook(hooks.target(layer.name, part=feature), make_hook(layer.name))
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
    several: bool = False,
) -> Iterator[None]:
    """Replace this run's features by ``store``'s at ``layers`` × ``steps``.

    With neither ``region`` nor ``threshold`` the whole feature map is replaced. With both, an
    element is replaced where both select it. ``store`` is only read, so one store serves a sweep.

    Args:
        pipe: the pipeline ``store`` was recorded with (same model, size, batch, scheduler, steps).
        store: from :func:`record_features`.
        layers: names to swap, a subset of ``store.layers``; ``None``: all recorded layers; ``[]``: none.
        steps: steps (U-Net calls, from 0) to swap, a subset of ``store.steps``; ``None``: all recorded.
        region: ``[H, W]`` boolean grid, True where A's features are taken: at the lowest U-Net
            resolution (``store.lowest_resolution``) or ``k`` times finer. Layers at least as fine
            as the grid take it by nearest neighbour; a coarser layer takes a cell only where
            every grid cell inside it is True, so a region drawn around a subject never reaches it.
            ``[N, H, W]``: one grid per image of a batched call (``N`` images, in output order),
            applied to both guidance halves.
        threshold: replace only elements with ``|saved - current| < threshold`` (positive, finite).
        several: swap into several pipeline calls made inside the block (each is checked and
            swapped like the first); by default a second call is refused.

    Raises:
        UnknownLayerError: a name this U-Net does not have.
        StoreMismatchError: the store comes from another model, holds no features or other layers
            or steps, or (at any step) was recorded at another size, batch or timestep.
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
    threshold = _check_threshold(threshold) if threshold is not None else None
    if not store.features and chosen:
        raise StoreMismatchError(f"this store holds no features ({store.describe()}): nothing could be swapped")
    active = set(wanted)

    def at_step(step: int, t: float, args: tuple, kwargs: dict) -> None:
        sample = args[0] if args else kwargs["sample"]
        _check_store_step(store, step, t, tuple(sample.shape), type(hooks.clock.scheduler).__name__)

    def make_hook(name: str) -> Callable:
        masks: dict[tuple[int, int], torch.Tensor] = {}  # the region resized, per layer size

        def hook(module: torch.nn.Module, args: tuple, output: Any) -> Any:
            if hooks.clock.step not in active:
                return None
            current = _output_tensor(output)
            saved = store.features[name, hooks.clock.step].to(device=current.device, dtype=current.dtype, copy=True)
            if saved.shape != current.shape:  # e.g. a different batch of prompts
                raise StoreMismatchError(
                    f"{name}: saved features are {tuple(saved.shape)}, this run computes {tuple(current.shape)}"
                )
            halves = 2 if getattr(pipe, "do_classifier_free_guidance", False) else 1
            take = _selection(saved, current, grid, threshold, masks, halves)
            return _replace_output(output, saved if take is None else torch.where(take, saved, current))

        return hook

    with PipelineHooks(pipe, "swap_features", several=several) as hooks:
        hooks.clock.subscribe(step=at_step)
        if active:
            for name in chosen:
                hooks.forward_hook(hooks.target(name, part=store.feature), make_hook(name))
        yield


def _selection(
    saved: torch.Tensor,
    current: torch.Tensor,
    grid: torch.Tensor | None,
    threshold: float | None,
    cache: dict[tuple[int, int], torch.Tensor],
    halves: int = 1,
) -> torch.Tensor | None:
    """Boolean mask broadcastable to ``[B, C, h, w]``, True where the saved value is taken; None: all."""
    take = None
    if grid is not None:
        size = tuple(current.shape[-2:])
        if size not in cache:
            cells = region_at(grid, size)
            cache[size] = cells[None, None] if cells.dim() == 2 else cells[:, None]  # [1 or N, 1, h, w]
        take = cache[size].to(current.device)
        if grid.dim() == 3:  # one region per image; under guidance the U-Net batch is [uncond images, cond images]
            if take.shape[0] * halves != current.shape[0]:
                raise StoreMismatchError(f"region holds {take.shape[0]} grids, but this call draws "
                                         f"{current.shape[0] // halves} images: give one grid per image")
            take = take.repeat(halves, 1, 1, 1)
    if threshold is not None:
        close = (saved - current).abs() < threshold
        take = close if take is None else take & close
    return take


def region_at(region: Any, size: tuple[int, int]) -> torch.Tensor:
    """A keep-region as a layer of ``size`` ``(h, w)`` takes it: bool ``[h, w]`` (or ``[N, h, w]``
    for ``N`` regions, one per image).

    A layer at least as fine as the region's grid takes it by nearest neighbour; a coarser layer
    takes a cell only where every grid cell inside it is True (a pooled region never grows).
    """
    grid = torch.as_tensor(region).bool()
    grids = grid[:, None] if grid.dim() == 3 else grid[None, None]  # [N, 1, H, W]
    if size[0] >= grid.shape[-2] and size[1] >= grid.shape[-1]:
        cells = F.interpolate(grids.float(), size=size, mode="nearest").bool()
    else:
        cells = F.adaptive_max_pool2d((~grids).float(), size) == 0
    return cells[:, 0] if grid.dim() == 3 else cells[0, 0]


def _check_threshold(threshold: Any) -> float:
    """A positive finite number; numpy and one-element torch scalars are numbers too."""
    value = threshold
    if torch.is_tensor(value) and value.numel() == 1:
        value = value.item()
    elif hasattr(value, "item") and getattr(value, "shape", None) == ():  # a numpy scalar
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ValueError(f"threshold must be a positive finite number, not {threshold!r}")
    return float(value)


def _check_region(region: Any, shape: tuple[int, int]) -> torch.Tensor:
    if isinstance(region, (str, bytes)):
        raise ValueError(f"region must be a boolean [H, W] grid, not the text {region!r} "
                         "(leave region=None to swap the whole feature map)")
    try:
        grid = torch.as_tensor(region).detach().cpu()
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"region must be a boolean [H, W] grid (a tensor, array or nested lists), "
                         f"not a {type(region).__name__}") from None
    if grid.dtype != torch.bool:
        if grid.is_floating_point() or grid.is_complex() or not bool(((grid == 0) | (grid == 1)).all()):
            raise ValueError(f"region must be a boolean grid (or 0/1 integers), got dtype {grid.dtype}")
        grid = grid.bool()
    finer = grid.shape[-2] // shape[0] if grid.dim() in (2, 3) else 0
    if finer < 1 or tuple(grid.shape[-2:]) != (finer * shape[0], finer * shape[1]) or 0 in grid.shape:
        raise ValueError(
            f"region must be a [H, W] = {list(shape)} grid (the lowest U-Net resolution of the recorded run) "
            f"or k times finer ([{2 * shape[0]}, {2 * shape[1]}], …), or [N, H, W] with one such grid per "
            f"image; got shape {list(grid.shape)}"
        )
    return grid


def _check_store_model(pipe: Any, store: FeatureStore) -> None:
    if not isinstance(store, FeatureStore):
        raise TypeError(f"store must be a FeatureStore from record_features, not {type(store).__name__}")
    if store.unet_fingerprint != unet_fingerprint(pipe.unet) or store.model != model_label(pipe):
        raise StoreMismatchError(
            f"this store was recorded with {store.model!r}; the pipeline is {model_label(pipe)!r}"
            + ("" if store.unet_fingerprint == unet_fingerprint(pipe.unet) else " with another U-Net architecture")
        )


def _check_store_step(store: FeatureStore, step: int, t: float, sample_shape: tuple[int, ...],
                      scheduler: str | None = None) -> None:
    """This run's step ``step`` must match the recorded one: same scheduler, U-Net input shape and
    timestep."""
    if scheduler is not None and store.scheduler is not None and scheduler != store.scheduler:
        raise StoreMismatchError(
            f"the store was recorded with {store.scheduler}, this run samples with {scheduler}: the same "
            "timesteps take other paths under another scheduler; record and swap with one scheduler"
        )
    if sample_shape != store.sample_shape:
        raise StoreMismatchError(
            f"the store was recorded with U-Net input {list(store.sample_shape)} (batch, channels, latent h, w), "
            f"this run has {list(sample_shape)}: use the same height, width, batch and guidance on/off"
        )
    if step >= store.num_steps or float(store.timesteps[step]) != t:
        recorded = f"timestep {float(store.timesteps[step]):g}" if step < store.num_steps else "no such step"
        raise StoreMismatchError(
            f"step {step} of this run is at timestep {t:g}, the recorded run had {recorded} ({store.num_steps} steps, "
            f"timesteps {[round(float(x)) for x in store.timesteps[:4]]}…): use the same scheduler and "
            "num_inference_steps, and keep pipe.scheduler as it was when the store was recorded"
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
