"""Judges: the toy world's exact one reads as the toy evaluation does; the open-vocabulary one runs
on the real classes (tiny random OWLv2 and SAM saved to folders, the toy CLIP), and its protocol
(matching, thresholds, counting, colours) is checked with the toy world's boxes and masks in the
detector's and segmenter's places."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sdprobe.analysis import judges
from sdprobe.analysis.judges import ObjectClause, OpenVocabularyJudge, StructuredPrompt, ToyJudge, make_judge
from sdprobe.analysis.judges.tiny import save
from sdprobe.models import ModelNotAvailableError
from sdprobe.toy.evaluate import judge as toy_judge
from sdprobe.world import sample_scene


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """The tiny judges saved as a downloaded model is: the loader a Hub id goes through reads them."""
    root = tmp_path_factory.mktemp("judges")
    return {"detector": str(save("owlv2-tiny", root / "owlv2")), "segmenter": str(save("sam-tiny", root / "sam"))}


SCENES = [sample_scene(seed) for seed in range(12)]


# ----------------------------------------------------------------------------- the toy judge


def test_the_toy_judge_reads_every_picture_exactly_as_the_toy_evaluation_does():
    readings = ToyJudge().read([s.image() for s in SCENES], [StructuredPrompt.toy(s.caption) for s in SCENES])
    for scene, reading in zip(SCENES, readings):
        verdict = toy_judge(scene.image(), scene.caption)
        assert reading.judgement == verdict.judgement
        assert reading.counts == verdict.counts and reading.correct == verdict.correct
        assert reading.background_correct == verdict.background_correct
    assert sum(r.correct for r in readings) >= 10  # the world's own scenes, read by the world


def test_a_reading_gives_each_objects_masks_and_the_foreground_as_pixels():
    scene = SCENES[0]
    reading = ToyJudge().read([scene.image()], [StructuredPrompt.toy(scene.caption)])[0]
    truth = scene.masks()
    assert reading.foreground.shape == truth.shape[1:] and reading.foreground.any()
    for k in range(len(scene.objects)):
        inter = (reading.mask(k) & truth[k]).sum() / max(truth[k].sum(), 1)
        assert inter > 0.8


def test_the_toy_judge_refuses_a_noun_of_another_world_in_one_line():
    with pytest.raises(ValueError, match="the toy judge knows the world's shapes .* not 'car'") as err:
        ToyJudge().read([SCENES[0].image()], [StructuredPrompt("a car", (ObjectClause("car"),))])
    assert "\n" not in str(err.value)


# ----------------------------------------------------------------------------- choosing a judge


@pytest.mark.parametrize("kwargs, message", [
    ({"kind": "toy", "model": "random:sd1-tiny"}, "judge='toy' reads only the toy model's pictures"),
    ({"kind": "open-vocabulary", "model": "random:sd1-tiny", "detector": "toy"}, "detector='toy' finds the toy world's"),
    ({"kind": "auto", "model": "org/model", "segmenter": "toy"}, "segmenter='toy'"),
    ({"kind": "gpt", "model": "toy"}, "judge must be one of auto, toy, open-vocabulary"),
    ({"kind": "auto", "model": "toy", "detector": ""}, "detector is 'auto', 'toy', a folder or a Hub id"),
])
def test_a_toy_only_setting_on_another_model_is_one_clear_error(kwargs, message):
    kind = kwargs.pop("kind")
    with pytest.raises(ValueError, match=message) as err:
        make_judge(kind, **kwargs)
    assert "\n" not in str(err.value)


def test_auto_picks_the_toy_judge_on_toy_and_the_open_vocabulary_one_elsewhere():
    assert isinstance(make_judge("auto", model="toy"), ToyJudge)
    judge = make_judge("auto", model="random:sd1-tiny")
    assert isinstance(judge, OpenVocabularyJudge)
    assert (judge.detector, judge.segmenter, judge.clip) == (judges.DEFAULT_DETECTOR, judges.DEFAULT_SEGMENTER,
                                                             judges.DEFAULT_CLIP)


def test_the_notebooks_judge_choice_is_the_libraries():
    from sdprobe.book.notebook import JUDGE

    assert JUDGE.options == judges.JUDGES


# ----------------------------------------------------------------------------- the open-vocabulary judge


def test_the_open_vocabulary_judge_loads_real_classes_from_folders_and_reads_every_picture(folders):
    judge = OpenVocabularyJudge(folders["detector"], folders["segmenter"], "toy", threshold=0.0, batch=3)
    pictures = [s.image() for s in SCENES[:5]]
    readings = judge.read(pictures, [StructuredPrompt.toy(s.caption) for s in SCENES[:5]])
    assert len(readings) == 5
    for picture, reading in zip(pictures, readings):
        for found in reading.found:
            assert len(found) <= judge.max_instances
            for f in found:
                x0, y0, x1, y1 = f.box
                assert 0 <= x0 < x1 <= picture.width and 0 <= y0 < y1 <= picture.height  # clipped to the picture
                assert f.mask.shape == (picture.height, picture.width) and f.mask.dtype == bool
                assert f.colour in judges.COLOURS
        assert reading.background in StructuredPrompt.toy("a dog").backgrounds


def test_batch_size_does_not_change_a_reading(folders):
    prompts = [StructuredPrompt.toy(s.caption) for s in SCENES[:4]]
    pictures = [s.image() for s in SCENES[:4]]
    one = OpenVocabularyJudge(folders["detector"], folders["segmenter"], "toy", threshold=0.0, batch=1).read(pictures, prompts)
    four = OpenVocabularyJudge(folders["detector"], folders["segmenter"], "toy", threshold=0.0, batch=4).read(pictures, prompts)
    assert [r.judgement for r in one] == [r.judgement for r in four]
    assert all(np.array_equal(a.foreground, b.foreground) for a, b in zip(one, four))


def test_no_detection_means_absent_and_an_empty_foreground(folders):
    judge = OpenVocabularyJudge(folders["detector"], folders["segmenter"], "toy", threshold=1.0)
    reading = judge.read([SCENES[0].image()], [StructuredPrompt.toy(SCENES[0].caption)])[0]
    assert not any(reading.present) and not reading.foreground.any() and reading.seen == (None,) * len(reading.seen)
    assert reading.judgement.missing and not reading.correct


def test_masks_come_back_at_any_picture_size(folders):
    judge = OpenVocabularyJudge(folders["detector"], folders["segmenter"], "toy", threshold=0.0)
    wide = Image.fromarray(np.asarray(SCENES[1].image())[:96, :]).resize((160, 96))
    reading = judge.read([wide], [StructuredPrompt("a dog", (ObjectClause("dog"),))])[0]
    assert reading.size == (96, 160) and reading.foreground.shape == (96, 160)
    assert all(f.box[2] <= 160 and f.box[3] <= 96 for f in reading.found[0])


def test_half_precision_on_the_cpu_is_refused_in_one_line(folders):
    with pytest.raises(ValueError, match="the judge runs in float32 on the CPU") as err:
        OpenVocabularyJudge(folders["detector"], folders["segmenter"], "toy", dtype="fp16")
    assert "\n" not in str(err.value)


def test_each_model_is_loaded_once_per_process(folders):
    first = judges.load_models("detector", folders["detector"])
    assert judges.load_models("detector", folders["detector"]) is first
    assert judges.load_models("segmenter", "random:sam-tiny") is judges.load_models("segmenter", "random:sam-tiny")


@pytest.mark.parametrize("kind, name, message", [
    ("detector", "/no/such/folder", "the detector (Owlv2ForObjectDetection) '/no/such/folder' is neither a folder nor"),
    ("segmenter", "facebook/sam-vit-base", "cannot load the segmenter (SamModel) 'facebook/sam-vit-base': the Hugging"),
    ("detector", "random:sam-tiny", "'random:sam-tiny' is not a random detector"),
])
def test_a_model_that_is_not_here_is_one_line_naming_it(kind, name, message):
    with pytest.raises((ModelNotAvailableError, ValueError), match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        judges.load_models(kind, name)
    assert "\n" not in str(err.value)


def test_a_folder_of_pickles_only_is_refused_without_unpickling(tmp_path, folders):
    import shutil

    from transformers import Owlv2ForObjectDetection

    folder = tmp_path / "pickled"
    shutil.copytree(folders["detector"], folder)
    import torch

    torch.save(Owlv2ForObjectDetection.from_pretrained(folder).state_dict(), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelNotAvailableError, match="cannot load the detector"):
        judges.load_models("detector", str(folder))


# ----------------------------------------------------------------------------- GenEval's protocol, exact boxes


class ExactBoxes(OpenVocabularyJudge):
    """The protocol with the toy world's own boxes and masks in the detector's and segmenter's places:
    every object of the scene is a candidate of its shape, scored by ``scores`` in scene order."""

    def __init__(self, scene_objects, scores, **kw):
        super().__init__("unused", "unused", "toy", **kw)
        self.scene_objects, self.scores = scene_objects, scores

    def detect(self, pictures, nouns, asked=None):
        out = []
        for objects in self.scene_objects:
            per = {n: [] for n in nouns}
            for (shape, box, _), score in zip(objects, self.scores):
                if shape in per:
                    per[shape].append((box, score))
            out.append(per)
        return out

    def segment(self, pictures, boxes):
        masks = {tuple(box): mask for objects in self.scene_objects for _, box, mask in objects}
        return [{noun: [masks[tuple(b)] for b, _ in per[noun]] for noun in per} for per in boxes]


def _objects(scene):
    return [(o.shape, (o.box[0], o.box[1], o.box[2] + 1, o.box[3] + 1), m) for o, m in zip(scene.objects, scene.masks())]


def test_a_clause_counts_the_instances_above_the_threshold_and_counting_prompts_ask_more():
    scene = next(s for s in (sample_scene(seed, "count") for seed in range(50)) if len(s.objects) == 3)
    shape = scene.objects[0].shape
    prompt = StructuredPrompt(scene.caption, (ObjectClause(shape, count=3),))
    judge = ExactBoxes([_objects(scene)], [0.95, 0.92, 0.5])
    reading = judge.read([scene.image()], [prompt])[0]
    assert len(reading.found[0]) == 2  # 0.5 is below GenEval's counting threshold of 0.9
    one = StructuredPrompt(scene.caption, (ObjectClause(shape),))
    assert len(judge.read([scene.image()], [one])[0].found[0]) == 3  # above 0.3 for a prompt that does not count
    assert len(ExactBoxes([_objects(scene)], [0.95] * 3, max_instances=2).read([scene.image()], [one])[0].found[0]) == 2


def test_overlapping_boxes_of_one_noun_are_suppressed_to_the_best():
    scene = sample_scene(3, "single")
    shape, box, mask = _objects(scene)[0]
    shifted = (box[0] + 1, box[1], box[2] + 1, box[3])
    judge = ExactBoxes([[(shape, box, mask), (shape, shifted, mask)]], [0.6, 0.8])
    found = judge.read([scene.image()], [StructuredPrompt(scene.caption, (ObjectClause(shape),))])[0].found[0]
    assert [f.score for f in found] == [0.8] and found[0].box == shifted


def test_the_colour_step_with_the_toy_clip_reads_the_worlds_colours_on_true_masks():
    from sdprobe.experiments.judging import colour_agreement

    result = colour_agreement("toy", scenes=40, seed=0)
    assert result["n"] >= 40 and 0 <= result["rate"] <= 1 and result["ci"][0] <= result["rate"] <= result["ci"][1]
    assert set(result["confusion"]) <= set(judges.COLOURS)


def test_the_api_pages_figures_for_the_colour_step_are_what_a_fresh_run_measures():
    import re

    from sdprobe.experiments.judging import colour_agreement
    from sdprobe.paths import REPO_ROOT

    text = (REPO_ROOT / "book" / "api.md").read_text()
    k, n, pct, lo, hi = re.search(r"names (\d+) of (\d+) objects'\s+colours right, ([\d.]+) % \(([\d.]+) to ([\d.]+)\)",
                                  text).groups()
    result = colour_agreement("toy", scenes=int(re.search(r"true masks of (\d+) held-out", text).group(1)))
    assert (result["k"], result["n"]) == (int(k), int(n))
    assert [f"{100 * v:.1f}" for v in (result["rate"], *result["ci"])] == [pct, lo, hi]


def test_the_papers_prompts_are_written_down_with_what_they_ask_for():
    from sdprobe.book.plan import load_preset

    heat = {p.text: p for p in judges.load_prompt_set("papers", "heatmaps")}
    preset, _ = load_preset("01_generation_process_heatmaps", "paper")
    assert {preset["prompt"], *preset["variants"]} <= set(heat) and heat[preset["prompt"]].nouns == ("dog",)
    assert heat["three dogs run across the field"].objects[0].count == 3
    stories = {p.text for p in judges.load_prompt_set("papers", "hopping_stories")}
    preset, _ = load_preset("02_hopping_mask_sequences", "paper")
    assert {s for story in preset["stories"] for s in story} == stories
    swap = judges.load_prompt_set("papers", "feature_swap")
    preset, _ = load_preset("04_unet_feature_swap", "paper")
    assert [p.text for p in swap] == [preset["prompt"], preset["edited_prompt"]]
    assert swap[1].edit.after == preset["edit"].split(":")[1] and swap[0].nouns[0] == preset["subject"]
    assert len(judges.load_prompt_set("drawbench_colors")) == 10
    with pytest.raises(ValueError, match="no prompt set 'nope'"):
        judges.load_prompt_set("nope")
