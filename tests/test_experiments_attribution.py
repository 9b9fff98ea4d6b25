"""Chapter 01's harness: heat maps read against true outlines."""

import numpy as np
import pytest

from sdprobe.experiments import attribution


def test_an_outline_is_pooled_to_the_latent_grid_by_majority():
    mask = np.zeros((16, 16), bool)
    mask[:8, :8] = True          # one full latent cell of an 8x8 pooling
    mask[8:12, 8:16] = True      # half of one cell
    region = attribution.latent_region(mask, (2, 2))
    assert region.tolist() == [[True, False], [False, True]]


def test_mass_inside_is_the_share_of_the_map_in_the_region():
    heat = np.array([[3.0, 1.0], [0.0, 0.0]])
    region = np.array([[True, False], [False, False]])
    assert attribution.mass_inside(heat, region) == pytest.approx(0.75)
    assert attribution.mass_inside(np.zeros((2, 2)), region) == 0.0


def test_estimates_leave_out_images_without_the_subject_and_count_those_with_several():
    runs = attribution.HeatmapRuns("three dogs", "dogs", images=[None] * 4, iou=[0.6, 0.8, None, 0.7],
                                   specificity=[0.2, 0.1, None, 0.3], half_inside=[2.0, 3.0, None, 4.0],
                                   half_outside=[5.0, 6.0, None, 3.0], drawn=[3, 2, 0, 1], covered=[3, 1, 0, 1],
                                   several_asked=True)
    e = attribution.estimates(runs)
    assert e["images"] == 4 and e["found"] == 3
    assert e["iou"]["mean"] == pytest.approx(0.7) and e["iou"]["n"] == 3
    assert e["lead"]["mean"] == pytest.approx((3 + 3 - 1) / 3) and 0 <= e["lead"]["p"] <= 1
    assert e["several"]["mean"] == 0.5 and e["several"]["n"] == 2  # of the two images with >= 2 dogs, one covered
    frame = attribution.summary_frame({"three dogs": e})
    runs.several_asked = False  # "a dog" that drew two: no test of attending several
    assert attribution.estimates(runs)["several"] is None
    assert "nan" not in frame.to_string().lower() and frame.loc["three dogs", "subject found"] == 3


def test_heatmap_runs_score_every_seed_of_a_traced_batch(tiny_pipes):
    pipe = tiny_pipes("sd1-tiny")
    square = np.zeros((64, 64), bool)
    square[16:48, 16:48] = True
    runs = attribution.heatmap_runs(pipe, "a dog runs across the field", "dog", lambda im, word: [square],
                                    seeds=3, steps=3, batch=2, height=64, width=64)
    assert runs.word == "dog" and runs.n == 3 and runs.drawn == [1, 1, 1] and not runs.several_asked
    assert all(0 <= v <= 1 for v in runs.iou) and len(runs.specificity) == 3
    assert all(v is not None for v in runs.half_inside)
    nothing = attribution.heatmap_runs(pipe, "a dog", "dog", lambda im, word: [], seeds=2, steps=2, batch=2,
                                       height=64, width=64)
    assert nothing.iou == [None, None] and attribution.estimates(nothing)["iou"] is None
    with pytest.raises(ValueError, match="starts with 'cat'"):
        attribution.heatmap_runs(pipe, "a dog", "cat", lambda im, word: [], seeds=1, steps=2, height=64, width=64)


def test_per_object_iou_scores_each_object_on_its_own_cell_not_the_union():
    from sdprobe.analysis.metrics import mask_iou, per_object_iou

    left, right = np.zeros((8, 16), bool), np.zeros((8, 16), bool)
    left[2:6, 1:4], right[2:6, 12:15] = True, True
    blob = np.zeros((8, 16), bool)
    blob[2:6, 1:15] = True  # one map over both dogs and the field between them
    assert per_object_iou(blob, [left, right]) == pytest.approx(12 / 28)  # each dog against its half of the blob
    big = np.zeros((8, 16), bool)
    big[0:8, 0:6] = True  # a large dog the map covers, and a small one it misses
    small = np.zeros((8, 16), bool)
    small[3:5, 13:15] = True
    assert mask_iou(big, big | small) == pytest.approx(48 / 52)  # the union hides the missed dog
    assert per_object_iou(big, [big, small]) == pytest.approx(0.5)  # one dog of two found
    assert per_object_iou(left, [left]) == mask_iou(left, left) == 1.0
    assert per_object_iou(left | right, [left, right]) == 1.0
    with pytest.raises(ValueError, match="at least one"):
        per_object_iou(blob, [])
