"""The layer map: paper block names ↔ diffusers modules, for SD 1.x, SD 2.x and SDXL."""

from __future__ import annotations

import json

import pytest
import torch

from sdprobe.models.layers import UnknownLayerError, canonical_name, layer_map, resolve_layers, text_layers
from sdprobe.paths import CONFIGS_DIR

SD1_TEXT_LAYERS = ["IN1", "IN2", "IN4", "IN5", "IN7", "IN8", "MID",
                   "OUT3", "OUT4", "OUT5", "OUT6", "OUT7", "OUT8", "OUT9", "OUT10", "OUT11"]
SDXL_TEXT_LAYERS = ["IN4", "IN5", "IN7", "IN8", "MID", "OUT0", "OUT1", "OUT2", "OUT3", "OUT4", "OUT5"]


def full_size_unet(family: str):
    from diffusers import UNet2DConditionModel

    config = json.loads((CONFIGS_DIR / family / "unet.json").read_text())
    with torch.device("meta"):
        return UNet2DConditionModel.from_config(config)


@pytest.mark.parametrize("family", ["sd1", "sd2"])
def test_sd1_and_sd2_have_the_sixteen_text_layers_of_the_paper(family):
    assert text_layers(full_size_unet(family)) == SD1_TEXT_LAYERS


@pytest.mark.parametrize("family", ["sd1", "sd2"])
def test_sd1_and_sd2_blocks_are_in0_to_in11_mid_out0_to_out11(family):
    names = list(layer_map(full_size_unet(family)))
    assert names == [f"IN{i}" for i in range(12)] + ["MID"] + [f"OUT{i}" for i in range(12)]


def test_sdxl_blocks_are_in0_to_in8_mid_out0_to_out8():
    unet = full_size_unet("sdxl")
    assert list(layer_map(unet)) == [f"IN{i}" for i in range(9)] + ["MID"] + [f"OUT{i}" for i in range(9)]
    assert text_layers(unet) == SDXL_TEXT_LAYERS


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl"])
def test_every_mapped_module_exists_in_the_full_size_unet(family):
    unet = full_size_unet(family)
    for layer in layer_map(unet).values():
        for path in layer.modules:
            unet.get_submodule(path)
        if layer.text_module:
            assert type(unet.get_submodule(layer.text_module)).__name__ == "Transformer2DModel"


def test_sd1_block_contents_follow_the_ldm_order():
    table = layer_map(full_size_unet("sd1"))
    assert table["IN1"].modules == ("down_blocks.0.resnets.0", "down_blocks.0.attentions.0")
    assert table["IN3"].modules == ("down_blocks.0.downsamplers.0",)
    assert table["IN11"].modules == ("down_blocks.3.resnets.1",)
    assert table["OUT2"].modules == ("up_blocks.0.resnets.2", "up_blocks.0.upsamplers.0")
    assert table["OUT11"].text_module == "up_blocks.3.attentions.2"
    assert table["OUT11"].output_module == "up_blocks.3.attentions.2"
    assert table["MID"].output_module == "mid_block"
    assert [table[n].scale for n in ("IN1", "IN4", "IN7", "MID", "OUT3", "OUT6", "OUT9")] == [1, 2, 4, 8, 4, 2, 1]


@pytest.mark.parametrize("family", ["sd1-tiny", "sd2-tiny", "sdxl-tiny"])
def test_text_layer_outputs_have_the_mapped_scale(tiny_pipes, family):
    pipe = tiny_pipes(family)
    sizes: dict[str, tuple[int, int]] = {}
    table = layer_map(pipe.unet)

    def remember(name: str):
        def hook(module, args, output) -> None:
            sizes.setdefault(name, tuple(output[0].shape[-2:]))
        return hook

    hooks = [pipe.unet.get_submodule(layer.text_module).register_forward_hook(remember(name))
             for name, layer in table.items() if layer.is_text]
    try:
        pipe("a dog", num_inference_steps=1, height=64, width=64)
    finally:
        for hook in hooks:
            hook.remove()
    assert set(sizes) == set(text_layers(pipe.unet))
    for name, size in sizes.items():
        assert size == (8 // table[name].scale, 8 // table[name].scale), name


@pytest.mark.parametrize(("raw", "name"), [("in08", "IN8"), ("IN8", "IN8"), ("out03", "OUT3"),
                                           ("M00", "MID"), ("mid", "MID"), (" Out11 ", "OUT11")])
def test_paper_spellings_are_accepted(raw, name):
    assert canonical_name(raw) == name


def test_unknown_layer_error_lists_the_valid_names():
    unet = full_size_unet("sdxl")
    with pytest.raises(UnknownLayerError) as err:
        resolve_layers(unet, ["OUT11"])
    assert "OUT8" in str(err.value) and "IN0" in str(err.value)


def test_text_only_rejects_a_block_without_cross_attention():
    with pytest.raises(UnknownLayerError, match="text-conditioned"):
        resolve_layers(full_size_unet("sd1"), "OUT0", text_only=True)
    assert [layer.name for layer in resolve_layers(full_size_unet("sd1"), ["out04", "IN08"], text_only=True)] == ["OUT4", "IN8"]
