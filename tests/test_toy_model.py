"""The shipped toy model: loads offline both ways, stays small, has SD 1.x's layer names."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import sdprobe
from sdprobe.paths import MODELS_DIR

TOY = MODELS_DIR / "toy"
SD1_TEXT_LAYERS = ["IN1", "IN2", "IN4", "IN5", "IN7", "IN8", "MID",
                   "OUT3", "OUT4", "OUT5", "OUT6", "OUT7", "OUT8", "OUT9", "OUT10", "OUT11"]


@pytest.fixture(scope="module")
def toy():
    return sdprobe.load_pipeline("toy", device="cpu")


def test_toy_loads_offline_with_the_stock_pipeline_class():
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(TOY, local_files_only=True)
    assert pipe.unet.config.sample_size == 16 and pipe.vae.config.sample_size == 128


def test_toy_generates_the_same_128_pixel_image_for_a_seed(toy):
    run = lambda: np.asarray(toy("a red circle on the field", num_inference_steps=3,
                                 generator=torch.Generator().manual_seed(0)).images[0])
    first = run()
    assert first.shape == (128, 128, 3)
    assert np.array_equal(first, run())


def test_toy_weights_are_safetensors_within_30_mb():
    weights = list(TOY.rglob("*.safetensors"))
    assert weights and not list(TOY.rglob("*.bin"))
    assert sum(p.stat().st_size for p in weights) <= 30 * 2**20


def test_toy_unet_has_the_sixteen_text_layers_of_sd1(toy):
    assert sdprobe.text_layers(toy.unet) == SD1_TEXT_LAYERS
    assert sdprobe.model_label(toy) == "toy"


def test_toy_latents_have_about_unit_scale(toy):
    from sdprobe.latents import encode_images
    from sdprobe.toy.world import sample_scene

    z = encode_images(toy, [sample_scene(900_000 + i).image() for i in range(8)])
    assert z.shape == (8, 4, 16, 16)
    assert 0.6 < float(z.std()) < 1.6


def test_toy_vae_brings_back_every_object_in_its_colour(toy):
    from sdprobe.latents import decode_latents, encode_images
    from sdprobe.metrics import mask_iou
    from sdprobe.toy.world import sample_scene, segment

    scenes = [sample_scene(900_000 + i) for i in range(12)]
    recons = decode_latents(toy, encode_images(toy, [s.image() for s in scenes]))
    kept = [any(d.colour == obj.colour and mask_iou(d.mask, mask) >= 0.3 for d in segment(recon))
            for scene, recon in zip(scenes, recons) for obj, mask in zip(scene.objects, scene.masks())]
    assert np.mean(kept) >= 0.9


def test_toy_clip_prefers_the_true_caption():
    from transformers import CLIPModel, CLIPTokenizer

    from sdprobe.toy.world import sample_scene

    clip = CLIPModel.from_pretrained(TOY / "clip", local_files_only=True).float().eval()
    tok = CLIPTokenizer.from_pretrained(TOY / "clip", local_files_only=True)
    scenes = [sample_scene(900_000 + i, kind="single") for i in range(8)]
    pixels = torch.stack([torch.from_numpy(s.array()).permute(2, 0, 1).float() / 127.5 - 1 for s in scenes])
    pixels = torch.nn.functional.interpolate(pixels, size=clip.config.vision_config.image_size, mode="area")
    ids = tok([s.caption for s in scenes], padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        logits = clip(input_ids=ids, pixel_values=pixels).logits_per_image
    assert (logits.argmax(1) == torch.arange(8)).float().mean() >= 0.5


def test_model_card_reports_the_shipped_evaluation():
    result = json.loads((TOY / "evaluation.json").read_text())
    card = (TOY / "README.md").read_text()
    for kind in ("single", "pair", "count"):
        assert f"{result['kinds'][kind]['correct']:.0%}" in card
    assert f"IoU {result['kinds']['single']['heatmap_iou']:.2f}" in card
    assert f"| {result['vae']['correct']:.0%} |" in card
