"""Chapter 02's harness: colour stories, drawn across stories in batches and compared in pairs."""

import pytest

from sdprobe.experiments import stories as storybook
from sdprobe.toy.world import parse_prompt


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
