"""load_pipeline: every family loads, generates and fails with one readable line."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

import sdprobe
from sdprobe.models import (
    SCHEDULERS,
    ModelNotAvailableError,
    family_of,
    load_pipeline,
    resolve_device,
    resolve_dtype,
    set_scheduler,
)

from conftest import TINY_FAMILIES, generator


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_tiny_family_generates_an_image_of_the_requested_size(tiny_pipes, family):
    pipe = tiny_pipes(family)
    image = pipe("a dog runs across the field", num_inference_steps=3, height=64, width=96,
                 generator=generator()).images[0]
    assert image.size == (96, 64)
    assert family_of(pipe) == family.removesuffix("-tiny")
    assert sdprobe.model_label(pipe) == f"random:{family}"


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_same_seed_gives_the_same_image(tiny_pipes, family):
    pipe = tiny_pipes(family)
    run = lambda seed: np.asarray(pipe("a dog", num_inference_steps=2, height=64, width=64,
                                       generator=generator(seed)).images[0])
    assert np.array_equal(run(3), run(3))
    assert not np.array_equal(run(3), run(4))


def test_random_weights_are_the_same_on_every_load():
    a = load_pipeline("random:sd1-tiny")
    b = load_pipeline("random:sd1-tiny")
    for (name, p), (_, q) in zip(a.unet.named_parameters(), b.unet.named_parameters()):
        assert torch.equal(p, q), name


def test_sd2_tiny_keeps_the_sd2_settings(tiny_pipes):
    pipe = tiny_pipes("sd2-tiny")
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    assert pipe.unet.config.upcast_attention is True
    assert pipe.unet.config.use_linear_projection is True
    assert pipe.tokenizer.pad_token == "!"
    assert pipe.tokenizer.convert_tokens_to_ids("!") == 0


def test_sdxl_tiny_has_two_text_encoders_and_size_conditioning(tiny_pipes):
    pipe = tiny_pipes("sdxl-tiny")
    assert pipe.text_encoder_2 is not None and pipe.tokenizer_2 is not None
    assert pipe.unet.config.addition_embed_type == "text_time"
    width = pipe.text_encoder.config.hidden_size + pipe.text_encoder_2.config.hidden_size
    assert pipe.unet.config.cross_attention_dim == width


@pytest.mark.parametrize(("family", "params_billion"), [("sd1", 0.86), ("sd2", 0.866), ("sdxl", 2.567)])
def test_full_size_unet_configs_have_the_published_parameter_counts(family, params_billion):
    from diffusers import UNet2DConditionModel

    from sdprobe.paths import CONFIGS_DIR

    config = json.loads((CONFIGS_DIR / family / "unet.json").read_text())
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(config)
    count = sum(p.numel() for p in unet.parameters()) / 1e9
    assert count == pytest.approx(params_billion, abs=0.005)


def test_auto_device_and_dtype_pick_the_cpu_in_fp32_here():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert resolve_device("auto").type in {"cpu", "mps"}
    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("auto", "cuda") == torch.float16
    assert resolve_dtype("bf16") == torch.bfloat16


def test_bad_dtype_names_the_valid_ones():
    with pytest.raises(ValueError, match="fp16"):
        resolve_dtype("float8")


def test_unknown_model_name_lists_what_is_accepted():
    with pytest.raises(ValueError, match="random:sd1-tiny"):
        load_pipeline("not a model")
    with pytest.raises(ValueError, match="random:sdxl"):
        load_pipeline("random:sd3")


def test_unreachable_hub_model_is_one_line_that_suggests_toy():
    with pytest.raises(ModelNotAvailableError) as err:
        load_pipeline("CompVis/stable-diffusion-v1-4")
    message = str(err.value)
    assert "\n" not in message
    assert "model='toy'" in message
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_local_folder_loads_back_the_same_pipeline(tiny_pipes, tmp_path):
    pipe = tiny_pipes("sd1-tiny")
    pipe.save_pretrained(tmp_path, safe_serialization=True)
    again = load_pipeline(str(tmp_path))
    kwargs = dict(num_inference_steps=2, height=64, width=64, output_type="np")
    a = pipe("a dog", generator=generator(), **kwargs).images
    b = again("a dog", generator=generator(), **kwargs).images
    np.testing.assert_allclose(a, b, atol=1e-5)  # same weights; kernels may differ in the last bit
    assert sdprobe.model_label(again) == str(tmp_path)


def test_folder_with_pickled_weights_is_refused(tiny_pipes, tmp_path):
    tiny_pipes("sd1-tiny").save_pretrained(tmp_path, safe_serialization=True)
    # The U-Net as a pickle only: loading it would run arbitrary code, so it must be refused.
    unet_dir = tmp_path / "unet"
    torch.save(tiny_pipes("sd1-tiny").unet.state_dict(), unet_dir / "diffusion_pytorch_model.bin")
    (unet_dir / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(ModelNotAvailableError, match="cannot load"):
        load_pipeline(str(tmp_path))


def test_folder_that_is_not_a_pipeline_says_so(tmp_path):
    with pytest.raises(ModelNotAvailableError, match="model_index.json"):
        load_pipeline(str(tmp_path))


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_scheduler_swap_keeps_the_noise_schedule(name):
    pipe = load_pipeline("random:sd1-tiny")
    betas = pipe.scheduler.betas.clone()
    set_scheduler(pipe, name)
    assert type(pipe.scheduler) is SCHEDULERS[name]
    assert torch.allclose(pipe.scheduler.betas, betas)


def test_unknown_scheduler_lists_the_known_ones():
    with pytest.raises(ValueError, match="euler"):
        load_pipeline("random:sd1-tiny", scheduler="heun2")


def _broken_copy(tmp_path, edit):
    """A copy of the toy model's folder with model_index.json edited (weights linked, not copied)."""
    import shutil

    from sdprobe.paths import MODELS_DIR

    folder = tmp_path / "model"
    shutil.copytree(MODELS_DIR / "toy", folder, copy_function=os.link)
    index = folder / "model_index.json"
    index.unlink()  # a hard link: write a new file, leave the toy's own untouched
    index.write_text(edit((MODELS_DIR / "toy" / "model_index.json").read_text()))
    return folder


@pytest.mark.parametrize("edit, message", [
    (lambda text: text[:-5], "not valid JSON"),
    (lambda text: text.replace('"StableDiffusionPipeline"', '["StableDiffusionPipeline"]', 1), "'_class_name' must name"),
    (lambda text: text.replace('"unet": [', '"unet2": ["diffusers", "UNet2DConditionModel"], "unet": [', 1),
     "component 'unet2'"),
])
def test_a_broken_pipeline_folder_is_one_line_naming_the_file(tmp_path, edit, message):
    folder = _broken_copy(tmp_path, edit)
    with pytest.raises(ModelNotAvailableError, match=message) as err:
        load_pipeline(str(folder), device="cpu")
    assert "\n" not in str(err.value) and str(folder) in str(err.value)


@pytest.mark.parametrize("model", ["", "   "])
def test_an_empty_model_name_is_refused(model):
    with pytest.raises(ValueError, match="model is empty"):
        load_pipeline(model)


def test_a_non_float_dtype_is_refused():
    with pytest.raises(ValueError, match="floating type"):
        resolve_dtype(torch.int8)


@pytest.mark.parametrize("device, message", [
    (3, "not 3"), ("gpu", "not 'gpu'"), (True, "not True"),
    ("meta", "holds shapes without data"),
    pytest.param("cuda", "no CUDA GPU", marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here")),
])
def test_a_device_this_machine_cannot_generate_on_is_one_clear_error(device, message):
    with pytest.raises(ValueError, match=message) as err:
        sdprobe.load_pipeline("random:sd1-tiny", device=device)
    assert "\n" not in str(err.value)
