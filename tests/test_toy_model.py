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


def test_toy_generates_with_the_stock_pipeline_class_and_no_dtype():
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(TOY, local_files_only=True)
    assert pipe.unet.config.sample_size == 16 and pipe.vae.config.sample_size == 128
    assert {pipe.unet.dtype, pipe.vae.dtype, pipe.text_encoder.dtype} == {torch.float32}
    image = pipe("a red dog runs across the field", num_inference_steps=2, output_type="np").images[0]
    assert image.shape == (128, 128, 3) and np.isfinite(image).all()


def test_toy_generates_the_same_128_pixel_image_for_a_seed(toy):
    run = lambda: np.asarray(toy("a red circle on the field", num_inference_steps=3,
                                 generator=torch.Generator().manual_seed(0)).images[0])
    first = run()
    assert first.shape == (128, 128, 3)
    assert np.array_equal(first, run())


@pytest.mark.parametrize("scheduler", ["ddim", "dpm", "euler"])
def test_toy_draws_the_asked_object_with_every_chapter_sampler(scheduler):
    # DDIM built from a config without SD 1.x's clip_sample=false clips x0 to [-1, 1] and draws noise.
    from sdprobe.toy.evaluate import judge

    pipe = sdprobe.load_pipeline("toy", device="cpu", scheduler=scheduler)
    prompts = ["a red square on the field", "a white dog in the snow", "a blue circle by the river"]
    images = pipe(prompts, num_inference_steps=20,
                  generator=[torch.Generator().manual_seed(k) for k in range(len(prompts))]).images
    assert sum(judge(image, prompt).correct for image, prompt in zip(images, prompts)) >= 2


def test_toy_weights_are_safetensors_within_30_mb():
    weights = list(TOY.rglob("*.safetensors"))
    assert weights and not list(TOY.rglob("*.bin"))
    assert sum(p.stat().st_size for p in weights) <= 30 * 2**20


def test_toy_unet_has_the_sixteen_text_layers_of_sd1(toy):
    assert sdprobe.text_layers(toy.unet) == SD1_TEXT_LAYERS
    assert sdprobe.model_label(toy) == "toy"


def test_toy_latents_have_about_unit_scale(toy):
    from sdprobe.models.latents import encode_images
    from sdprobe.world import sample_scene

    z = encode_images(toy, [sample_scene(900_000 + i).image() for i in range(8)])
    assert z.shape == (8, 4, 16, 16)
    assert 0.6 < float(z.std()) < 1.6


def test_toy_vae_brings_back_every_object_in_its_shape_and_colour(toy):
    from sdprobe.models.latents import decode_latents, encode_images
    from sdprobe.toy.evaluate import judge
    from sdprobe.world import sample_scene

    scenes = [sample_scene(900_000 + i, kind=kind) for kind in ("single", "pair", "count") for i in range(8)]
    recons = decode_latents(toy, encode_images(toy, [s.image() for s in scenes]))
    assert np.mean([judge(r, s.caption).correct for r, s in zip(recons, scenes)]) >= 0.9


def test_toy_clip_prefers_the_true_caption():
    from transformers import CLIPModel, CLIPTokenizer

    from sdprobe.world import sample_scene

    clip = CLIPModel.from_pretrained(TOY / "clip", local_files_only=True).float().eval()
    tok = CLIPTokenizer.from_pretrained(TOY / "clip", local_files_only=True)
    scenes = [sample_scene(900_000 + i, kind="single") for i in range(8)]
    pixels = torch.stack([torch.from_numpy(s.array()).permute(2, 0, 1).float() / 127.5 - 1 for s in scenes])
    pixels = torch.nn.functional.interpolate(pixels, size=clip.config.vision_config.image_size, mode="area")
    ids = tok([s.caption for s in scenes], padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        logits = clip(input_ids=ids, pixel_values=pixels).logits_per_image
    assert (logits.argmax(1) == torch.arange(8)).float().mean() >= 0.5


def test_model_card_reports_every_gate_of_the_shipped_evaluation_with_its_interval():
    from sdprobe.toy.card import bars_table

    result = json.loads((TOY / "evaluation.json").read_text())
    card = (TOY / "README.md").read_text()
    assert result["kinds"]["single"]["images"] >= 100  # the gates rest on at least 100 prompts per kind
    for row in bars_table(result):
        line = f"| {row['what']} | {row['kind']} | {row['measured']} | {row['95 % interval']} | {row['n']} |"
        assert line in card
        assert row["95 % interval"] != "—"


def test_the_shipped_model_meets_its_gates():
    from sdprobe.toy.evaluate import GATES, bars_met

    met = bars_met(json.loads((TOY / "evaluation.json").read_text()))
    assert all(met[name] for name in GATES), met
