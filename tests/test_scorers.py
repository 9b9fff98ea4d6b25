"""sdprobe.analysis.scorers: loading the CLIP and the detector that score generated images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import CLIPConfig, CLIPModel

from sdprobe.analysis import metrics, scorers
from sdprobe.models import ModelNotAvailableError
from sdprobe.models.loading import stand_in_tokenizer
from sdprobe.world import make_scene


@pytest.fixture(scope="module")
def toy_like_clip_folder(tmp_path_factory):
    """A tiny random CLIP saved the way the toy export saves it: model and tokenizer, no image processor."""
    folder = tmp_path_factory.mktemp("clip")
    tok = stand_in_tokenizer({"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
                              "pad_token": "<|endoftext|>", "model_max_length": 77})
    torch.manual_seed(0)
    text = dict(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_hidden_layers=1,
                max_position_embeddings=77, vocab_size=len(tok), bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id)
    vision = dict(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_hidden_layers=1,
                  image_size=32, patch_size=8)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_load_clip_without_image_processor_scales_pixels_to_minus_one_one(toy_like_clip_folder):
    model, processor = scorers.load_clip(str(toy_like_clip_folder))
    white = np.full((128, 128, 3), 255, np.uint8)
    black = np.zeros((128, 128, 3), np.uint8)
    pixels = processor(images=[white, black], return_tensors="pt")["pixel_values"]
    assert pixels.shape == (2, 3, 32, 32)
    assert torch.allclose(pixels[0], torch.ones_like(pixels[0])) and torch.allclose(pixels[1], -torch.ones_like(pixels[1]))
    assert not model.training and model.dtype == torch.float32


def test_load_clip_scores_are_deterministic(toy_like_clip_folder):
    model, processor = scorers.load_clip(str(toy_like_clip_folder))
    image = make_scene("field", [("red", "square")], seed=0).image()
    a = metrics.clip_score(model, [image], "a red square on the field", processor=processor)
    b = metrics.clip_score(model, [image], "a red square on the field", processor=processor)
    assert torch.equal(a, b) and 0 <= float(a[0]) <= 100


def test_load_clip_uses_a_saved_processor_config_when_there_is_one(toy_like_clip_folder, tmp_path):
    import shutil

    from transformers import CLIPImageProcessor

    folder = tmp_path / "with_processor"
    shutil.copytree(toy_like_clip_folder, folder)
    CLIPImageProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16}).save_pretrained(folder)
    _, processor = scorers.load_clip(str(folder))
    assert processor.image_processor.crop_size == {"height": 16, "width": 16}


def test_load_clip_names_a_missing_model(tmp_path):
    with pytest.raises(ModelNotAvailableError, match="the CLIP '.*nowhere' is neither a folder nor a Hub id"):
        scorers.load_clip(str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="'toy', a folder or a Hub id"):
        scorers.load_clip("")


def test_toy_detector_finds_each_drawn_object_in_its_own_box():
    scene = make_scene("field", [("red", "square"), ("white", "dog")], seed=1)
    image = scene.image()
    for obj in scene.objects:
        x0, y0, x1, y1 = obj.box
        iou = metrics.placement_iou((x0, y0, x1 + 1, y1 + 1), detector=scorers.toy_detector, image=image, label=obj.shape)
        assert iou > 0.8, (obj, iou)


def test_toy_detector_colour_word_filters_and_absent_shape_scores_zero():
    image = make_scene("field", [("red", "square"), ("white", "dog")], seed=1).image()
    assert scorers.toy_detector(image, "red square") and not scorers.toy_detector(image, "blue square")
    assert metrics.placement_iou((0, 0, 64, 64), detector=scorers.toy_detector, image=image, label="star") == 0.0


def test_toy_detector_rejects_a_label_that_is_not_a_shape():
    with pytest.raises(ValueError, match="finds shapes"):
        scorers.toy_detector(np.zeros((8, 8, 3), np.uint8), "car")


def test_load_detector_toy_is_the_segmentation_detector():
    assert scorers.load_detector("toy") is scorers.toy_detector
