"""Chapter 04's harness: edit pairs drawn in batches, A's features swapped into B, judged in pairs."""

import numpy as np
import pytest

from sdprobe.experiments import edits
from sdprobe.experiments.edits import EditPair, Setup, Swap
from sdprobe.world import parse_prompt

STEPS = 3
KW = {"num_inference_steps": STEPS, "guidance_scale": 7.5, "height": 128, "width": 128}


def test_edit_pairs_change_only_the_subjects_colour_and_take_one_seed_each():
    pairs = edits.edit_pairs(12, seed=5)
    assert pairs == edits.edit_pairs(12, seed=5) and [p.seed for p in pairs] == list(range(5, 17))
    for pair in pairs:
        (before, shape, _), = parse_prompt(pair.source).groups
        (after, shape_b, _), = parse_prompt(pair.edited).groups
        assert before != after == pair.colour and shape == shape_b
        assert parse_prompt(pair.source).background == parse_prompt(pair.edited).background
    assert {p.source.split()[2] for p in edits.edit_pairs(12, shapes=["dog"])} == {"dog"}
    with pytest.raises(ValueError, match="at least one edit pair"):
        edits.edit_pairs(0)
    with pytest.raises(ValueError, match="unknown toy-world shapes"):
        edits.edit_pairs(2, shapes=["cat"])


def test_seeded_pairs_read_the_colour_of_toy_prompts_only():
    toy = edits.seeded_pairs("a red dog on the field", "a blue dog on the field", 3, seed=10)
    assert [(p.colour, p.seed) for p in toy] == [("blue", 10), ("blue", 11), ("blue", 12)]
    real = edits.seeded_pairs("girl, school uniform", "girl, pants", 2)
    assert {p.colour for p in real} == {None}


def test_a_swap_names_its_mode_and_only_a_threshold_swap_takes_a_threshold():
    with pytest.raises(ValueError, match="'whole', 'region' or 'threshold'"):
        Swap(("OUT3",), (0,), "patch")
    with pytest.raises(ValueError, match="needs a threshold"):
        Swap(("OUT3",), (0,), "threshold")
    with pytest.raises(ValueError, match="only a threshold swap"):
        Swap(("OUT3",), (0,), "whole", 0.1)


@pytest.fixture(scope="module")
def drawn(pipes):
    pairs = [EditPair("a red dog on the field", "a blue dog on the field", "blue", 1),
             EditPair("a yellow star in the sky", "a white star in the sky", "white", 2),
             EditPair("a black circle in the snow", "a red circle in the snow", "red", 3)]
    pipe = pipes("toy")
    calls = STEPS + (type(pipe.scheduler).__name__ == "PNDMScheduler")  # PNDM calls the U-Net once more
    all_steps = tuple(range(calls))
    setups = {
        "plain": Setup(),
        "last layer": Setup((Swap(("OUT11",), all_steps),)),  # OUT11 alone decides the output: B becomes A
        "last layer, again": Setup((Swap(("OUT11",), all_steps),), pairs=1),
        "everywhere kept": Setup((Swap(("OUT11",), all_steps, "region"),)),
        "first pair": Setup((Swap(("OUT3", "OUT4"), (0, 1)), Swap(("OUT6",), (1, 2), "threshold", 0.5)), pairs=1),
    }
    runs = edits.run_edits(pipe, pairs, setups, region_scale=4, region_max_foreground=1.0, batch=2, **KW)
    return pipe, pairs, runs


def test_every_configuration_runs_on_its_pairs_and_a_full_swap_of_the_last_layer_gives_back_a(drawn):
    _, pairs, runs = drawn
    assert len(runs.sources) == len(runs.regions) == 3
    assert all(region.shape == (8, 8) and region.all() for region in runs.regions)  # every cell may be kept
    last = runs.scored("last layer")
    assert [s.mse for s in last] == [0.0, 0.0, 0.0] and all(s.pose_iou == 1.0 for s in last if s.colour)
    assert not any(s.edited for s in last)  # A's picture, so A's colour
    assert [np.asarray(im).tolist() == np.asarray(src).tolist() for im, src in zip(runs.images["last layer"],
                                                                                   runs.sources)] == [True] * 3
    region = runs.images["everywhere kept"]
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(region, runs.images["last layer"]))
    # the same swaps are drawn once; a configuration on fewer pairs leaves the others empty
    assert runs.images["last layer, again"][0] is runs.images["last layer"][0]
    assert runs.images["last layer, again"][1:] == [None, None] and len(runs.scored("first pair")) == 1
    plain = runs.scored("plain")
    assert all(s.edited == (s.colour == p.colour) and s.kept == (s.pose_iou >= 0.5) for s, p in zip(plain, pairs))
    with pytest.raises(KeyError, match="no configuration 'nope'"):
        runs.scored("nope")


def test_summaries_and_paired_comparisons_rest_on_the_pairs_each_configuration_ran(drawn):
    _, _, runs = drawn
    whole = edits.summary(runs, "last layer")
    assert whole["n"] == 3 and whole["edited"]["rate"] == 0.0 and whole["mse"]["mean"] == 0.0
    assert whole["passed"]["ci"][0] == 0.0 and whole["kept"]["n"] == 3
    mse = edits.compare(runs, "last layer", "plain", "mse")
    plain_mse = [s.mse for s in runs.scored("plain")]
    assert mse["test"] == "sign test" and mse["gain"]["mean"] == pytest.approx(np.mean(plain_mse))
    took = edits.compare(runs, "last layer", "plain", "edited")
    assert took["test"] == "McNemar (exact)" and took["n"] == 3
    with pytest.raises(ValueError, match="at least two"):  # "first pair" ran on one pair only
        edits.compare(runs, "plain", "first pair", "pose_iou")
    with pytest.raises(KeyError, match="no configuration 'nope'"):
        edits.compare(runs, "plain", "nope", "mse")


def test_bad_runs_are_refused_before_anything_is_drawn(pipes):
    pipe = pipes("toy")
    pair = edits.edit_pairs(1)
    with pytest.raises(ValueError, match="at least one edit pair"):
        edits.run_edits(pipe, [], {"plain": Setup()}, **KW)
    with pytest.raises(ValueError, match=r"\['none'\] run on fewer than one pair"):
        edits.run_edits(pipe, pair, {"none": Setup(pairs=0)}, **KW)
    with pytest.raises(ValueError, match="batch must be at least 1"):
        edits.run_edits(pipe, pair, {"plain": Setup()}, batch=0, **KW)


def test_real_edit_pairs_change_one_colour_of_a_real_subject_and_a_given_pair_names_its_edit():
    pairs = edits.edit_pairs(5, seed=2, world="real")
    for p in pairs:
        assert p.edit.attribute == "colour" and p.colour == p.edit.after and p.subject in p.source
        assert p.source.replace(p.edit.before, p.edit.after, 1) == p.edited and p.checkable
    paper = edits.seeded_pairs("a girl in a blue skirt", "a girl in pants", 3, seed=1111, subject="girl",
                               edit=edits.parse_edit("noun:pants"))
    assert [p.seed for p in paper] == [1111, 1112, 1113] and paper[0].checkable and paper[0].colour is None
    assert not edits.seeded_pairs("a girl", "a woman", 1)[0].checkable
    toy = edits.seeded_pairs("a red dog on the field", "a blue dog on the field", 1)[0]
    assert (toy.colour, toy.subject) == ("blue", "dog")
    for bad in ("pants", "size:big", "noun:"):
        with pytest.raises(ValueError, match="edit is ''"):
            edits.parse_edit(bad)


def test_the_chapters_configurations_take_the_papers_best_settings_and_scale_its_steps():
    from sdprobe.analysis.claims import load_reference

    conf = edits.configurations(load_reference("04_unet_feature_swap"), steps=10, text_layers=["IN1", "OUT3", "OUT4"],
                                sweep_pairs=4, anchor_layers=["OUT3", "OUT4"], anchor_until=4,
                                study_layers=["IN8", "OUT3", "OUT4", "OUT5", "OUT6", "OUT10"],
                                study_subsets=["000000", "011111"], threshold_layers=["OUT3"], thresholds=[0.5],
                                whole_layer_sets=[["OUT3", "OUT4"]], whole_until=[3])
    assert list(conf.headline) == ["no swap", "① whole", "② region", "③ threshold"]
    assert conf.headline["① whole"].swaps[0].steps == (0, 1, 2, 3)  # the paper's 20 of 50 is 4 of 10
    assert conf.paper_bits == "011111" and conf.table3["000000"].swaps == (conf.headline["② region"].swaps[0],)
    assert set(conf.setups) >= {"single IN1", "whole ('OUT3, OUT4', 3)", "region 011111", "threshold 0.5"}
    assert all(s.pairs == 4 for s in conf.singles.values())
