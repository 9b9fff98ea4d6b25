"""sdprobe.analysis.metrics: IoU, CLIP scores, judged rates, similarities, background MSE, Pearson r."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

from sdprobe.analysis import metrics
from sdprobe.analysis.metrics import ImageJudgement
from sdprobe.models.loading import stand_in_tokenizer


# ----------------------------------------------------------------------------- IoU


def test_box_iou_of_identical_boxes_is_one_and_of_disjoint_boxes_zero():
    assert metrics.box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert metrics.box_iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0


def test_box_iou_of_half_overlap_is_one_third():
    assert metrics.box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)


def test_box_iou_of_degenerate_boxes_is_zero_not_nan():
    assert metrics.box_iou((3, 3, 3, 3), (3, 3, 3, 3)) == 0.0


def test_box_iou_rejects_inverted_or_short_boxes():
    with pytest.raises(ValueError, match="x0 <= x1"):
        metrics.box_iou((10, 0, 0, 10), (0, 0, 1, 1))
    with pytest.raises(ValueError, match=r"\(x0, y0, x1, y1\)"):
        metrics.box_iou((0, 0, 1), (0, 0, 1, 1))


def test_mask_iou_empty_masks_score_zero_and_identical_masks_one():
    empty = np.zeros((8, 8), bool)
    full = np.ones((8, 8), bool)
    assert metrics.mask_iou(empty, empty) == 1.0  # identical masks, documented
    assert metrics.mask_iou(empty, full) == 0.0
    assert metrics.mask_iou(full, full) == 1.0


def test_mask_iou_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.mask_iou(np.zeros((4, 4)), np.zeros((4, 5)))


def test_mask_to_box_is_tight_and_end_exclusive():
    m = np.zeros((10, 12), bool)
    m[2:5, 3:9] = True
    assert metrics.mask_to_box(m) == (3, 2, 9, 5)
    assert metrics.mask_to_box(np.zeros((4, 4))) is None


def test_placement_iou_from_mask_box_and_detector_agree():
    m = np.zeros((32, 32), bool)
    m[8:24, 4:20] = True
    req = (4, 8, 20, 24)
    assert metrics.placement_iou(req, mask=m) == 1.0
    assert metrics.placement_iou(req, box=(4, 8, 20, 24)) == 1.0
    seen = []

    def detector(image, label):
        seen.append(label)
        return [(0, 0, 2, 2), (4, 8, 20, 24)]  # the best match counts

    assert metrics.placement_iou(req, detector=detector, image="img", label="car") == 1.0
    assert seen == ["car"]


def test_placement_iou_of_a_missing_object_is_zero():
    req = (0, 0, 10, 10)
    assert metrics.placement_iou(req, mask=np.zeros((16, 16), bool)) == 0.0
    assert metrics.placement_iou(req, detector=lambda im, lab: [], image="img", label="sheep") == 0.0


def test_placement_iou_needs_exactly_one_source():
    with pytest.raises(ValueError, match="exactly one"):
        metrics.placement_iou((0, 0, 1, 1))
    with pytest.raises(ValueError, match="exactly one"):
        metrics.placement_iou((0, 0, 1, 1), box=(0, 0, 1, 1), mask=np.ones((2, 2)))
    with pytest.raises(ValueError, match="image= and label="):
        metrics.placement_iou((0, 0, 1, 1), detector=lambda i, l: [])


def test_detector_from_pipeline_keeps_boxes_above_threshold_for_the_label():
    calls = []

    def fake_owl(image, candidate_labels):  # the output format of transformers' detection pipeline
        calls.append(candidate_labels)
        return [{"score": 0.9, "label": "car", "box": {"xmin": 4, "ymin": 8, "xmax": 20, "ymax": 24}},
                {"score": 0.05, "label": "car", "box": {"xmin": 0, "ymin": 0, "xmax": 30, "ymax": 30}}]

    det = metrics.detector_from_pipeline(fake_owl, threshold=0.1)
    assert det("img", "car") == [(4, 8, 20, 24)]
    assert calls == [["car"]]
    assert metrics.placement_iou((4, 8, 20, 24), detector=det, image="img", label="car") == 1.0


# ----------------------------------------------------------------------------- CLIP


@pytest.fixture(scope="module")
def tiny_clip():
    torch.manual_seed(0)
    cfg = CLIPConfig(
        text_config={"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4,
                     "num_hidden_layers": 2, "max_position_embeddings": 77, "vocab_size": 49408,
                     "bos_token_id": 49406, "eos_token_id": 49407, "pad_token_id": 49407},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4,
                       "num_hidden_layers": 2, "image_size": 32, "patch_size": 8},
        projection_dim=16,
    )
    model = CLIPModel(cfg).eval()
    tok = stand_in_tokenizer({"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
                              "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
                              "model_max_length": 77})
    improc = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    return model, tok, improc


def _images(n: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)) for _ in range(n)]


def test_clip_score_is_100_times_clamped_cosine_and_deterministic(tiny_clip):
    model, tok, improc = tiny_clip
    imgs = _images(3)
    s1 = metrics.clip_score(model, imgs, ["a red car", "a white sheep", "a bird"], tokenizer=tok, image_processor=improc)
    s2 = metrics.clip_score(model, imgs, ["a red car", "a white sheep", "a bird"], tokenizer=tok, image_processor=improc)
    assert s1.shape == (3,)
    assert torch.equal(s1, s2)
    assert ((s1 >= 0) & (s1 <= 100)).all()
    # the same number by hand
    px = improc(images=imgs[:1], return_tensors="pt")["pixel_values"]
    ids = tok(["a red car"], padding=True, return_tensors="pt")
    with torch.no_grad():
        fi = model.get_image_features(pixel_values=px)
        ft = model.get_text_features(**ids)
    fi, ft = (getattr(f, "pooler_output", f) for f in (fi, ft))
    cos = torch.nn.functional.cosine_similarity(fi, ft).item()
    assert s1[0].item() == pytest.approx(100 * max(cos, 0.0), abs=1e-4)


def test_clip_score_broadcasts_one_text_and_rejects_count_mismatch(tiny_clip):
    model, tok, improc = tiny_clip
    imgs = _images(2)
    assert metrics.clip_score(model, imgs, "a cup", tokenizer=tok, image_processor=improc).shape == (2,)
    with pytest.raises(ValueError, match="2 images but 3 texts"):
        metrics.clip_score(model, imgs, ["a", "b", "c"], tokenizer=tok, image_processor=improc)
    with pytest.raises(ValueError, match="tokenizer"):
        metrics.clip_score(model, imgs, "a cup", image_processor=improc)


def test_clip_image_similarity_of_identical_images_is_one(tiny_clip):
    model, _, improc = tiny_clip
    a, b = _images(2, seed=1), _images(2, seed=2)
    same = metrics.clip_image_similarity(model, a, a, image_processor=improc)
    assert torch.allclose(same, torch.ones(2), atol=1e-5)
    diff = metrics.clip_image_similarity(model, a, b, image_processor=improc)
    assert (diff < 1 - 1e-6).all()


# ----------------------------------------------------------------------------- judged rates


def _j(present, seen, requested=("red", "white")):
    return ImageJudgement(tuple(requested), tuple(present), tuple(seen))


def test_missing_object_rate_counts_images_with_any_missing_object():
    js = [_j((True, True), ("red", "white")), _j((True, False), ("red", None)), _j((False, False), (None, None))]
    assert metrics.missing_object_rate(js) == pytest.approx(2 / 3)


def test_colour_swap_rate_counts_other_objects_colours_only():
    swapped = _j((True, True), ("white", "red"))
    leak = _j((True, True), ("red", "red"))       # sheep took the car's colour: a swap
    wrong = _j((True, True), ("blue", "white"))   # a colour nobody asked for: not a swap
    right = _j((True, True), ("red", "white"))
    assert swapped.swapped and leak.swapped and not wrong.swapped and not right.swapped
    assert metrics.colour_swap_rate([swapped, leak, wrong, right]) == 0.5


def test_colour_swap_rate_among_complete_images_is_nan_without_any():
    js = [_j((True, False), ("white", None)), _j((True, False), ("red", None))]
    assert math.isnan(metrics.colour_swap_rate(js))
    # over all images, the car painted in the missing sheep's white still counts as a swap
    assert metrics.colour_swap_rate(js, among_complete=False) == 0.5


def test_judged_rates_reject_empty_and_ragged_input():
    with pytest.raises(ValueError, match="no judgements"):
        metrics.missing_object_rate([])
    with pytest.raises(ValueError, match="same objects"):
        ImageJudgement(("red", "white"), (True,), ("red",))


# ----------------------------------------------------------------------------- similarities


def test_mean_pairwise_similarity_identical_items_is_one():
    x = torch.randn(1, 5).repeat(4, 1)
    assert metrics.mean_pairwise_similarity(x) == pytest.approx(1.0)


def test_mean_pairwise_similarity_all_versus_consecutive():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    assert metrics.mean_pairwise_similarity(x, pairs="consecutive") == pytest.approx(0.0)
    assert metrics.mean_pairwise_similarity(x, pairs="all") == pytest.approx(1 / 3)


def test_mean_pairwise_similarity_errors():
    with pytest.raises(ValueError, match="at least two"):
        metrics.mean_pairwise_similarity(torch.ones(1, 3))
    with pytest.raises(ValueError, match="all zero"):
        metrics.mean_pairwise_similarity(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="'all' or 'consecutive'"):
        metrics.mean_pairwise_similarity(torch.ones(2, 3), pairs="adjacent")


def test_background_mse_ignores_the_foreground_and_uses_pixel_units():
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    b[0, 0] = 255          # a foreground change: ignored
    b[3, 3] = 10           # a background change of 10 on all channels of one pixel
    fg = np.zeros((4, 4), bool)
    fg[0, 0] = True
    assert metrics.background_mse(a, b, fg) == pytest.approx(100 / 15)
    assert metrics.background_mse(Image.fromarray(a), Image.fromarray(a)) == 0.0


def test_background_mse_rejects_full_foreground_and_mismatched_shapes():
    a = np.zeros((4, 4, 3))
    with pytest.raises(ValueError, match="no background"):
        metrics.background_mse(a, a, np.ones((4, 4), bool))
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.background_mse(a, np.zeros((4, 5, 3)))


def test_pearson_r_identical_is_one_negated_is_minus_one_constant_is_nan():
    m = torch.rand(8, 8, generator=torch.Generator().manual_seed(0))
    assert metrics.pearson_r(m, m) == pytest.approx(1.0)
    assert metrics.pearson_r(m, -m) == pytest.approx(-1.0)
    assert math.isnan(metrics.pearson_r(m, torch.zeros(8, 8)))
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.pearson_r(m, torch.zeros(8, 7))
