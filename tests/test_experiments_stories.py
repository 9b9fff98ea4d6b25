"""Chapter 02's harness: colour stories, drawn across stories in batches and compared in pairs."""

import pytest

from sdprobe.experiments import stories as storybook
from sdprobe.world import parse_prompt


def test_colour_stories_name_the_colour_once_and_move_the_subject_to_new_places():
    stories = storybook.colour_stories(20, seed=3)
    assert len(stories) == 20 and stories == storybook.colour_stories(20, seed=3)
    for story in stories:
        specs = [parse_prompt(text) for text in story]
        colour, shape, _ = specs[0].groups[0]
        assert colour is not None and all(s.groups[0][:2] == (None, shape) for s in specs[1:])
        assert len({s.background for s in specs}) == len(story)
    with pytest.raises(ValueError, match="2 to 4 sentences"):
        storybook.colour_stories(1, sentences=5)


def test_stories_are_drawn_once_per_first_sentence_and_paired_by_story_seed(tiny_pipes):
    pipe = tiny_pipes("sd1-tiny")
    stories = [["a red dog on the field", "a dog by the river", "a dog in the snow"],
               ["a blue star in the snow", "a star in the sky"]]
    runs = [("causal", True), ("hopping", True), ("causal", False)]
    drawn = storybook.draw_stories(pipe, stories, runs, batch=3, num_inference_steps=2, height=64, width=64)
    assert [len(imgs) for imgs in drawn.images["hopping", True]] == [3, 2]
    assert all(drawn.images[run][s][0] is drawn.images[runs[0]][s][0] for run in runs for s in range(2))
    later = drawn.later(("causal", False))
    assert [(text, s) for _, text, s in later] == [("a dog by the river", 0), ("a dog in the snow", 0),
                                                   ("a star in the sky", 1)]
    # the same noise, the same sentence embedding under vanilla CLIP: a 2nd call draws the same picture
    again = storybook.draw_stories(pipe, stories[:1], [("causal", True)], batch=2, num_inference_steps=2, height=64,
                                   width=64)
    assert list(again.images["causal", True][0][1].getdata()) == list(drawn.images["causal", True][0][1].getdata())

    second = drawn.select([1])
    assert second.stories == stories[1:] and second.images["causal", False] == drawn.images["causal", False][1:]

    verdicts = storybook.compare(drawn, ("causal", True), ("hopping", True), lambda im, text, first: "dog" in text)
    assert verdicts["n"] == 3 and verdicts["gain"]["mean"] == 0 and verdicts["test"] == "McNemar (exact)"
    numbers = storybook.compare(drawn, ("causal", True), ("hopping", True), lambda im, text, first: float(len(text)))
    assert numbers["test"] == "sign test" and numbers["a"]["mean"] == pytest.approx(numbers["b"]["mean"])


def test_real_colour_stories_carry_their_subject_colour_and_places():
    from sdprobe.analysis.judges import COLOURS

    stories = storybook.story_prompts(10, sentences=3, seed=4, world="real")
    assert stories == storybook.story_prompts(10, sentences=3, seed=4, world="real")
    for story in stories:
        first = story[0].objects[0]
        assert first.colour in COLOURS and first.colour in story[0].text
        assert all(p.objects[0] == type(first)(first.noun) and first.colour not in p.text for p in story[1:])
        assert len({p.background for p in story}) == 3 and all(p.background in p.backgrounds for p in story)
    toy = storybook.story_prompts(3, seed=3)
    assert [[p.text for p in s] for s in toy] == storybook.colour_stories(3, seed=3)
    with pytest.raises(ValueError, match="'toy' or 'real'"):
        storybook.story_prompts(1, world="mars")


def test_judged_runs_read_each_later_picture_once_and_compare_both_questions():
    from sdprobe.analysis.judges import StructuredPrompt

    stories = [[StructuredPrompt.toy(t) for t in s] for s in (["a red dog on the field", "a dog in the snow"],
                                                               ["a blue star in the sky", "a star by the river"])]
    runs = storybook.StoryRuns([[p.text for p in s] for s in stories],
                               {run: [[None, f"{run[0]}-{s}"] for s in range(2)] for run in
                                [("causal", True), ("hopping", True), ("causal", False)]})

    class Reads:  # a judge that reads the run's name off the picture
        calls = 0

        def read(self, images, prompts):
            Reads.calls += 1
            kept = {"causal-0": "blue", "causal-1": "blue", "hopping-0": "red", "hopping-1": "blue"}
            return [type("R", (), {"correct": True, "background_correct": True, "seen": (kept[im],)})() for im in images]

    judged = storybook.judged_runs(runs, stories, Reads())
    assert Reads.calls == 3 and judged["hopping", True].keeps == [True, True] and judged["causal", True].keeps == [False, True]
    results = storybook.judged_comparisons(judged, ("causal", True), [("hopping", True)], ("causal", False))
    assert results["keeps"]["hopping", True]["gain"]["mean"] == 0.5 and results["noise"]["n"] == 2
    rates = storybook.rate_panels(results, lambda run: run[0] + str(run[1]), ("causal", True), ("causal", False))
    assert set(rates["keeps the first colour"]) == {"causalTrue", "hoppingTrue", "causalFalse"}
