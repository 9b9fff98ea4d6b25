"""The U-Net layer map: the block names the papers use, mapped to diffusers modules.

Papers and the AUTOMATIC1111 web UI name the blocks of the original LDM U-Net ``IN0``…``IN11``,
``MID`` and ``OUT0``…``OUT11`` (SDXL: ``IN0``…``IN8``, ``MID``, ``OUT0``…``OUT8``). diffusers
groups the same modules differently (``down_blocks.1.attentions.0``…). The LDM order is:

* ``IN0`` the input convolution; then, level by level, one ``IN`` block per resnet (with its
  cross-attention transformer where the level has one), and one for each downsampler;
* ``MID`` resnet, attention, resnet;
* ``OUT`` blocks level by level, one per resnet of the up block (``layers_per_block + 1`` of
  them), the last of a level also holding the upsampler.

Blocks with a cross-attention transformer are *text-conditioned* layers: for SD 1.x exactly 16
(``IN1, IN2, IN4, IN5, IN7, IN8, MID, OUT3``…``OUT11``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["Layer", "UnknownLayerError", "canonical_name", "layer_map", "resolve_layers", "text_layers"]

_NAME = re.compile(r"^(IN|OUT)0*(\d+)$|^(MID|M0*)$", re.IGNORECASE)


class UnknownLayerError(KeyError):
    """A layer name this model does not have; the message lists the valid ones."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


@dataclass(frozen=True)
class Layer:
    """One LDM block of the U-Net.

    Attributes:
        name: the LDM name, e.g. ``"OUT4"``.
        modules: diffusers module paths that make up the block, in forward order.
        text_module: path of the cross-attention ``Transformer2DModel``, or ``None``.
        scale: spatial downsampling of the block's features relative to the latent
            (1 at the latent size, 2, 4, 8 further down); for a block ending in a down- or
            upsampler, the scale of its resnet and attention, before resampling.
    """

    name: str
    modules: tuple[str, ...]
    text_module: str | None
    scale: int

    @property
    def is_text(self) -> bool:
        """True when the block holds a cross-attention (text-conditioned) transformer."""
        return self.text_module is not None

    @property
    def output_module(self) -> str:
        """Path of the module whose output is the whole block's output."""
        return "mid_block" if self.name == "MID" else self.modules[-1]


def canonical_name(name: str) -> str:
    """``"in01"`` → ``"IN1"``, ``"M00"``/``"mid"`` → ``"MID"``; other strings are returned upper-cased."""
    match = _NAME.match(name.strip())
    if not match:
        return name.strip().upper()
    if match.group(3):
        return "MID"
    return f"{match.group(1).upper()}{int(match.group(2))}"


def _config_of(unet_or_config: Any) -> Mapping[str, Any]:
    config = getattr(unet_or_config, "config", unet_or_config)
    return config if isinstance(config, Mapping) else dict(config)


def _per_level(value: int | Iterable[int], levels: int) -> list[int]:
    return [value] * levels if isinstance(value, int) else list(value)


def layer_map(unet_or_config: Any) -> dict[str, Layer]:
    """Every LDM block of a U-Net, in forward order: ``IN0``…, ``MID``, ``OUT0``….

    Args:
        unet_or_config: a ``UNet2DConditionModel`` or its config (a mapping).
    """
    cfg = _config_of(unet_or_config)
    down_types = list(cfg["down_block_types"])
    up_types = list(cfg["up_block_types"])
    levels = len(down_types)
    per_level = _per_level(cfg["layers_per_block"], levels)
    layers: list[Layer] = [Layer("IN0", ("conv_in",), None, 1)]

    for level, kind in enumerate(down_types):
        has_attn = "CrossAttn" in kind
        for j in range(per_level[level]):
            mods = [f"down_blocks.{level}.resnets.{j}"]
            attn = f"down_blocks.{level}.attentions.{j}" if has_attn else None
            mods += [attn] if attn else []
            layers.append(Layer(f"IN{len(layers)}", tuple(mods), attn, 2**level))
        if level < levels - 1:  # diffusers adds a downsampler to every level but the last
            layers.append(Layer(f"IN{len(layers)}", (f"down_blocks.{level}.downsamplers.0",), None, 2**level))

    mid_type = cfg.get("mid_block_type") or "UNetMidBlock2DCrossAttn"
    mid_attn = "mid_block.attentions.0" if "CrossAttn" in mid_type else None
    mid_mods = ("mid_block.resnets.0",) + ((mid_attn,) if mid_attn else ()) + ("mid_block.resnets.1",)
    layers.append(Layer("MID", mid_mods, mid_attn, 2 ** (levels - 1)))

    up_per_level = list(reversed(per_level))
    count = 0
    for level, kind in enumerate(up_types):
        has_attn = "CrossAttn" in kind
        scale = 2 ** (levels - 1 - level)
        for j in range(up_per_level[level] + 1):
            mods = [f"up_blocks.{level}.resnets.{j}"]
            attn = f"up_blocks.{level}.attentions.{j}" if has_attn else None
            mods += [attn] if attn else []
            if j == up_per_level[level] and level < levels - 1:
                mods.append(f"up_blocks.{level}.upsamplers.0")
            layers.append(Layer(f"OUT{count}", tuple(mods), attn, scale))
            count += 1
    return {layer.name: layer for layer in layers}


def text_layers(unet_or_config: Any) -> list[str]:
    """Names of the text-conditioned (cross-attention) blocks, in forward order."""
    return [name for name, layer in layer_map(unet_or_config).items() if layer.is_text]


def resolve_layers(unet_or_config: Any, names: Iterable[str] | str, *, text_only: bool = False) -> list[Layer]:
    """Look up layer names (``"IN8"``, ``"in08"``, ``"MID"``, ``"OUT3"``…), keeping their order.

    Raises:
        UnknownLayerError: a name the model does not have (or, with ``text_only``, a block without
            cross-attention); the message lists the valid names for this model.
    """
    table = layer_map(unet_or_config)
    valid = [n for n, layer in table.items() if layer.is_text or not text_only]
    found = []
    for raw in [names] if isinstance(names, str) else list(names):
        name = canonical_name(raw)
        if name not in valid:
            what = "text-conditioned layer" if text_only else "layer"
            raise UnknownLayerError(f"{raw!r} is not a {what} of this U-Net; valid names: {', '.join(valid)}")
        found.append(table[name])
    return found


def get_module(unet: torch.nn.Module, path: str) -> torch.nn.Module:
    """The submodule at a diffusers path such as ``"up_blocks.1.attentions.0"``."""
    return unet.get_submodule(path)
