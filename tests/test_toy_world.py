"""The toy world: scenes are their seeds, captions say what is drawn, the judge sees it."""

from __future__ import annotations

import numpy as np
import pytest

from sdprobe.toy.evaluate import GATES, KINDS, TARGETS, bars_met, evaluation_prompts, evaluation_scenes, judge, judge_images
from sdprobe.world.tokenizer import build_tokenizer
from sdprobe.world import (
    BACKGROUNDS, DOCUMENT_ANALOGUES, GRASS_ROW, PALETTE, SHAPES, background_array, background_of, caption_corpus,
    edit_scene, make_scene, parse_prompt, sample_scene, segment, story_prompts,
)

LATENT_CELL = 8  # pixels per latent cell under an 8x VAE


def test_a_scene_is_its_seed():
    a, b = sample_scene(123), sample_scene(123)
    assert a == b and np.array_equal(a.array(), b.array())
    assert sample_scene(124) != a


@pytest.mark.parametrize("seed", range(40))
def test_the_caption_names_what_is_drawn(seed):
    scene = sample_scene(seed)
    spec = parse_prompt(scene.caption)
    drawn = sorted((o.shape, o.colour) for o in scene.objects)
    asked = sorted((shape, colour) for colour, shape, count in spec.groups for _ in range(count))
    assert [s for s, _ in asked] == [s for s, _ in drawn]
    assert all(c is None or c == d for (_, c), (_, d) in zip(asked, drawn))
    assert spec.background in (None, scene.background)


@pytest.mark.parametrize("seed", range(20))
def test_masks_are_disjoint_and_inside_their_boxes(seed):
    scene = sample_scene(seed)
    masks = scene.masks()
    assert masks.sum(0).max() <= 1
    for mask, (x0, y0, x1, y1) in zip(masks, scene.boxes()):
        ys, xs = np.nonzero(mask)
        assert mask.any() and xs.min() >= x0 and xs.max() <= x1 and ys.min() >= y0 and ys.max() <= y1


def test_placement_never_fails_and_every_object_spans_five_latent_cells():
    """20,000 scenes of the training stream: placement raises if it ever fails."""
    shortest = min(min(x1 - x0 + 1, y1 - y0 + 1) for s in range(1_000_000, 1_020_000)
                   for x0, y0, x1, y1 in sample_scene(s).boxes())
    assert shortest >= 5 * LATENT_CELL


def test_three_of_the_widest_shape_always_fit():
    for seed in range(300):
        scene = make_scene("field", [("red", "dog")] * 3, seed=seed)
        assert scene.masks().sum(0).max() <= 1
        assert scene.boxes().min() >= 0 and scene.boxes().max() < scene.size


@pytest.mark.parametrize("kind", KINDS)
def test_the_judge_reads_the_worlds_own_scenes_of_every_kind(kind):
    scenes = [sample_scene(500_000 + s, kind=kind) for s in range(150)]
    verdicts = [judge(scene.array(), scene.caption) for scene in scenes]
    assert np.mean([v.correct for v in verdicts]) >= 0.99
    named = [v.background_correct for v in verdicts if v.background_correct is not None]
    assert len(named) > 50 and np.mean(named) >= 0.99


@pytest.mark.parametrize("background", sorted(BACKGROUNDS))
def test_background_of_names_every_background_even_behind_a_large_object(background):
    assert background_of(background_array(background, texture_seed=3)) == background
    big = make_scene(background, [("black", "square")], seed=5)
    assert background_of(big.array()) == background


def test_textures_are_coarser_than_the_latent_grid():
    rows = background_array("field")[:, 0].astype(int)
    changes = np.flatnonzero(np.abs(np.diff(rows, axis=0)).sum(1))
    assert GRASS_ROW >= 2 * LATENT_CELL and np.diff(changes).min() >= GRASS_ROW
    for smooth in ("snow", "sky"):
        steps = np.abs(np.diff(background_array(smooth).astype(int), axis=0)).max()
        assert steps <= 2  # a gradient, no edges


def test_segmentation_finds_each_object_with_its_colour():
    scene = sample_scene(7, kind="pair")
    found = sorted((d.colour, d.shape) for d in segment(scene.image()))
    assert found == sorted((o.colour, o.shape) for o in scene.objects)


def test_the_world_is_as_large_as_promised():
    assert len(SHAPES) >= 4 and len(PALETTE) >= 6 and len(BACKGROUNDS) >= 3
    kinds = {sample_scene(s).kind for s in range(50)}
    assert kinds == {"single", "pair", "count"}
    assert {len(sample_scene(s).objects) for s in range(200)} == {1, 2, 3}


def test_an_edit_changes_one_attribute_and_keeps_the_layout():
    scene = sample_scene(3, kind="single")
    other = next(c for c in PALETTE if c != scene.objects[0].colour)
    edited = edit_scene(scene, colour=other)
    assert edited.objects[0].colour == other and edited.objects[0].box == scene.objects[0].box
    assert edited.background == scene.background
    changed = (edited.array() != scene.array()).any(-1)
    assert not changed[~scene.masks()[0]].any()


def test_document_analogues_and_stories_are_toy_prompts():
    for prompts in DOCUMENT_ANALOGUES.values():
        for prompt in prompts:
            parse_prompt(prompt)
    story = story_prompts("white", "dog")
    assert len(story) >= 3 and all("white dog" in p for p in story)


def test_tokenizer_keeps_world_words_whole_and_pads_to_77(tmp_path):
    tok = build_tokenizer(caption_corpus(500), tmp_path)
    tokens = tok.convert_ids_to_tokens(tok("a red square and a white dog on the field").input_ids)
    assert tokens[1:-1] == [w + "</w>" for w in "a red square and a white dog on the field".split()]
    ids = tok("a dog", padding="max_length", max_length=77).input_ids
    assert len(ids) == 77 and ids[0] == tok.bos_token_id and set(ids[3:]) == {tok.eos_token_id}
    assert tok.unk_token_id not in tok("quixotic zebra").input_ids[1:-1]  # unknown words fall back to bytes


def test_bars_met_compares_each_measured_value_with_its_bar():
    at = {"kinds": {"single": {"correct": GATES["single"], "heatmap_iou": GATES["heatmap_iou"] - 0.01},
                    "pair": {"correct": TARGETS["pair"] - 0.01}, "count": {"correct": 1.0}},
          "background": {"correct": GATES["background"]}, "vae": {"correct": GATES["vae"] - 0.01}}
    assert bars_met(at) == {"single": True, "pair": False, "count": True, "heatmap_iou": False,
                            "background": True, "vae": False}


class _DrawsTheTruth:
    """A stand-in pipeline that draws each prompt's own ground-truth scene (evaluation seeds)."""

    def __init__(self, kind: str, n: int):
        self.scenes = {s.caption: s for s in reversed(evaluation_scenes(kind, n))}
        self.calls = []

    def __call__(self, prompts, num_inference_steps, guidance_scale, generator):
        self.calls.append((len(prompts), num_inference_steps, guidance_scale))
        return type("Out", (), {"images": [self.scenes[p].image() for p in prompts]})()


@pytest.mark.parametrize("kind", KINDS)
def test_judging_a_pipeline_that_draws_the_truth_finds_every_image_correct(kind):
    prompts = evaluation_prompts(kind, 20)
    pipe = _DrawsTheTruth(kind, 20)
    verdicts = judge_images(pipe, prompts, steps=7, guidance=3.0, batch=8)
    assert len(verdicts) == 20 and all(v.correct for v in verdicts)
    assert all(v.background_correct is not False for v in verdicts)
    assert pipe.calls == [(8, 7, 3.0), (8, 7, 3.0), (4, 7, 3.0)]  # in batches, with the asked settings


def test_a_wrong_picture_is_judged_wrong():
    scene = next(s for s in evaluation_scenes("single", 10) if s.objects[0].colour in s.caption)
    other = next(c for c in PALETTE if c != scene.objects[0].colour)
    verdict = judge(edit_scene(scene, colour=other).image(), scene.caption)
    assert verdict.judgement.present == (True,) and not verdict.correct
