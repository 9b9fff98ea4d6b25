"""Chapter 02's measurements: story pictures under the hopping mask, judged over many stories.

A *colour story* names its subject with a colour once and then moves it through other places
without the colour ("a red star on the field", "a star by the river", "a star in the snow"). Each
story is drawn under each text-encoder mask from its own seed; the later pictures are judged
against their own sentences (the subject's shape on the named background) and for whether the
subject kept the first sentence's colour, which only context can tell them. Conditions are
paired by (story, sentence).

The stories are the toy world's on the toy model and real ones elsewhere (:func:`story_prompts`:
five COCO subjects, GenEval's colours, five places, ``data/prompts/colour_stories.yaml``), each
sentence with what it asks for, so any judge (:mod:`sdprobe.analysis.judges`) reads them:
:func:`judged_runs` reads every later picture once per run and :func:`judged_comparisons`
compares the runs on both questions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from PIL import Image

from sdprobe.analysis.judges import ObjectClause, StructuredPrompt
from sdprobe.analysis.stats import mcnemar, mean_ci, paired_difference, rate, sign_test
from sdprobe.probes.textmask import PromptEmbeds, encode_prompts
from sdprobe.progress import progress

__all__ = ["JudgedRun", "StoryRuns", "colour_stories", "compare", "compare_scores", "draw_stories", "judged_comparisons",
           "judged_runs", "rate_panels", "story_prompts", "story_seed"]


def colour_stories(n: int, *, sentences: int = 3, seed: int = 0) -> list[list[str]]:
    """``n`` toy-world colour stories of ``sentences`` sentences, each on a different background."""
    from sdprobe.world import BACKGROUNDS, PALETTE, SHAPES, background_phrase

    if not 2 <= sentences <= len(BACKGROUNDS):
        raise ValueError(f"a colour story has 2 to {len(BACKGROUNDS)} sentences (one per background), got {sentences}")
    rng = np.random.default_rng(seed)
    colours, backgrounds = list(PALETTE), list(BACKGROUNDS)
    stories = []
    for _ in range(n):
        colour, shape = colours[rng.integers(len(colours))], SHAPES[rng.integers(len(SHAPES))]
        places = [backgrounds[i] for i in rng.permutation(len(backgrounds))[:sentences]]
        stories.append([f"a {colour} {shape} {background_phrase(places[0])}"]
                       + [f"a {shape} {background_phrase(bg)}" for bg in places[1:]])
    return stories


def story_prompts(n: int, *, sentences: int = 3, seed: int = 0, world: str = "toy") -> list[list[StructuredPrompt]]:
    """``n`` colour stories with what each sentence asks for: the toy world's
    (:func:`colour_stories`, read by the world's grammar) or, with ``world="real"``, stories of
    the same shape drawn from ``data/prompts/colour_stories.yaml`` ("a white dog on the grass",
    "the dog by the river", "the dog in the snow")."""
    if world == "toy":
        return [[StructuredPrompt.toy(text) for text in story] for story in colour_stories(n, sentences=sentences, seed=seed)]
    if world != "real":
        raise ValueError(f"world is 'toy' or 'real', not {world!r}")
    vocabulary = _real_vocabulary()
    places = vocabulary["places"]
    if not 2 <= sentences <= len(places):
        raise ValueError(f"a colour story has 2 to {len(places)} sentences (one per place), got {sentences}")
    rng = np.random.default_rng(seed)
    subjects, colours, names = vocabulary["subjects"], vocabulary["colours"], list(places)
    stories = []
    for _ in range(n):
        colour, subject = colours[rng.integers(len(colours))], subjects[rng.integers(len(subjects))]
        where = [names[i] for i in rng.permutation(len(names))[:sentences]]
        story = [StructuredPrompt(f"a {colour} {subject} {places[where[0]]}", (ObjectClause(subject, colour),),
                                  where[0], tuple(names))]
        story += [StructuredPrompt(f"the {subject} {places[p]}", (ObjectClause(subject),), p, tuple(names))
                  for p in where[1:]]
        stories.append(story)
    return stories


def _real_vocabulary() -> dict[str, Any]:
    import yaml

    from sdprobe.paths import DATA_DIR

    return yaml.safe_load((DATA_DIR / "prompts" / "colour_stories.yaml").read_text(encoding="utf-8"))


def story_seed(seed: int, story: int) -> int:
    """The seed of story ``story``: its sentences start from it (shared noise) or from it plus
    the sentence index (the control)."""
    return seed + 1000 * story


@dataclass
class StoryRuns:
    """Pictures of every story under every run ``(mask, shared noise)``: ``images[run][s][k]``."""

    stories: list[list[str]]
    images: dict[tuple[str, bool], list[list[Image.Image]]] = field(default_factory=dict)

    def later(self, run: tuple[str, bool]) -> list[tuple[Image.Image, str, int]]:
        """``(picture, its sentence, story)`` for every sentence after the first, in order."""
        return [(im, text, s) for s, (story, imgs) in enumerate(zip(self.stories, self.images[run]))
                for k, (im, text) in enumerate(zip(imgs, story)) if k > 0]

    def select(self, which: Sequence[int]) -> StoryRuns:
        """The stories ``which`` only (e.g. those a judge can read), every run kept."""
        which = list(which)
        return StoryRuns([self.stories[s] for s in which],
                         {run: [imgs[s] for s in which] for run, imgs in self.images.items()})


def _joint(embeds: Sequence[PromptEmbeds]) -> PromptEmbeds:
    """Every story's per-sentence embeddings as one table (the empty prompt is shared)."""
    pooled = [e.pooled for e in embeds]
    return replace(embeds[0], prompt_embeds=torch.cat([e.prompt_embeds for e in embeds]),
                   pooled=None if pooled[0] is None else torch.cat(pooled),
                   prompts=[p for e in embeds for p in e.prompts])


@torch.no_grad()
def draw_stories(pipe: Any, stories: Sequence[Sequence[str]], runs: Sequence[tuple[str, bool]], *, seed: int = 0,
                 batch: int = 16, **pipe_kwargs: Any) -> StoryRuns:
    """Draw every sentence of every story under each run ``(mask, same noise)``, ``batch``
    pictures a call across stories. A first sentence is the same under every mask (it sees only
    itself) and, from the story's seed, the same under either noise, so it is drawn once.

    Args:
        runs: e.g. ``[("causal", True), ("hopping", True), ("causal", False)]``.
        pipe_kwargs: ``num_inference_steps``, ``guidance_scale``, ``height``…
    """
    out = StoryRuns([list(s) for s in stories])
    first: list[Image.Image] | None = None
    sentences = [(s, k) for s, story in enumerate(stories) for k in range(len(story))]
    rows = {job: i for i, job in enumerate(sentences)}  # the row of each sentence in the joint table
    for mask, shared in progress(runs, desc="story runs"):
        table = _joint([encode_prompts(pipe, story, mask=mask) for story in stories])
        jobs = [(s, k) for s, k in sentences if k > 0 or first is None]
        drawn: dict[tuple[int, int], Image.Image] = {}
        for start in range(0, len(jobs), batch):
            chunk = jobs[start:start + batch]
            gens = [torch.Generator(device=pipe.device).manual_seed(story_seed(seed, s) + (0 if shared else k))
                    for s, k in chunk]
            images = pipe(**table.batch_kwargs([rows[j] for j in chunk]), generator=gens, **pipe_kwargs).images
            drawn.update(zip(chunk, images))
        if first is None:
            first = [drawn[(s, 0)] for s in range(len(stories))]
        out.images[(mask, shared)] = [[first[s] if k == 0 else drawn[(s, k)] for k in range(len(story))]
                                      for s, story in enumerate(stories)]
    return out


def compare(runs: StoryRuns, a: tuple[str, bool], b: tuple[str, bool],
            score: Callable[[Image.Image, str, str], float]) -> dict[str, Any]:
    """Score every later picture under runs ``a`` and ``b`` and compare them pair by pair.

    Args:
        score: ``score(picture, its sentence, the story's first sentence)``: a bool (a judge's
            verdict) or a number (a CLIP score).

    Returns:
        ``"a"``, ``"b"`` (rates with exact intervals, or means with bootstrap intervals),
        ``"gain"`` (``b`` minus ``a``, bootstrap interval over pairs), ``"p"`` and ``"test"``
        (exact McNemar for verdicts, exact sign test for numbers) and ``"n"`` (pairs).
    """
    def scores(run: tuple[str, bool]) -> list[Any]:
        return [score(im, text, runs.stories[s][0]) for im, text, s in runs.later(run)]

    return compare_scores(scores(a), scores(b))


def compare_scores(sa: Sequence[Any], sb: Sequence[Any]) -> dict[str, Any]:
    """Two runs' scores of the same later pictures compared pair by pair (see :func:`compare`).

    Raises:
        ValueError: the runs scored different numbers of pictures.
    """
    sa, sb = list(sa), list(sb)
    if len(sa) != len(sb):
        raise ValueError(f"the runs scored {len(sa)} and {len(sb)} pictures: compare the same pictures")
    if all(isinstance(v, (bool, np.bool_)) for v in sa + sb):
        return {"a": rate(sa), "b": rate(sb), "gain": paired_difference(sa, sb), "p": mcnemar(sa, sb),
                "test": "McNemar (exact)", "n": len(sa)}
    return {"a": mean_ci(sa), "b": mean_ci(sb), "gain": paired_difference(sa, sb),
            "p": sign_test(np.asarray(sb, dtype=float) - np.asarray(sa, dtype=float)), "test": "sign test", "n": len(sa)}


# ----------------------------------------------------------------------------- judged


@dataclass
class JudgedRun:
    """One run's later pictures as a judge read them, in :meth:`StoryRuns.later` order.

    Attributes:
        follows: the picture follows its own sentence: every object the sentence asks for is
            there, in its number, and the place it names is the one seen.
        keeps: the sentence's subject (its first object, its largest instance) has the colour the
            story's first sentence gave it.
    """

    follows: list[bool]
    keeps: list[bool]


def judged_runs(runs: StoryRuns, stories: Sequence[Sequence[StructuredPrompt]], judge: Any) -> dict[tuple[str, bool], JudgedRun]:
    """Read every later picture of every run once with ``judge`` against its sentence.

    Raises:
        ValueError: ``stories`` are not the stories ``runs`` drew, or a first sentence names no
            colour for its subject.
    """
    if [[p.text for p in story] for story in stories] != runs.stories:
        raise ValueError("give the structured prompts of the stories these runs drew, in the same order")
    first = [story[0].objects[0].colour for story in stories]
    if any(c is None for c in first):
        raise ValueError("a colour story's first sentence names its subject's colour")
    out = {}
    for run in runs.images:
        later = runs.later(run)
        asked = [stories[s][k] for s, story in enumerate(stories) for k in range(1, len(story))]
        readings = judge.read([im for im, _, _ in later], asked)
        out[run] = JudgedRun([r.correct and r.background_correct is not False for r in readings],
                             [r.seen[0] == first[s] for r, (_, _, s) in zip(readings, later)])
    return out


def judged_comparisons(judged: Mapping[tuple[str, bool], JudgedRun], vanilla: tuple[str, bool],
                       masked: Sequence[tuple[str, bool]], control: tuple[str, bool]) -> dict[str, Any]:
    """Chapter 02's comparisons: each ``masked`` run against ``vanilla`` on both questions, and
    the noise control (``control`` against ``vanilla``, kept colour): ``{"follows": {run: …},
    "keeps": {run: …}, "noise": …}``, each as :func:`compare_scores` gives it."""
    return {
        "follows": {run: compare_scores(judged[vanilla].follows, judged[run].follows) for run in masked},
        "keeps": {run: compare_scores(judged[vanilla].keeps, judged[run].keeps) for run in masked},
        "noise": compare_scores(judged[control].keeps, judged[vanilla].keeps),
    }


def rate_panels(results: Mapping[str, Any], name: Callable[[tuple[str, bool]], str], vanilla: tuple[str, bool],
                control: tuple[str, bool]) -> dict[str, dict[str, dict]]:
    """Each run's rates for both questions (exact intervals), for Fig. 9 and its table:
    ``{"follows its sentence": {run name: rate}, "keeps the first colour": {…}}``."""
    rates: dict[str, dict[str, dict]] = {"follows its sentence": {}, "keeps the first colour": {}}
    for question, key in (("follows its sentence", "follows"), ("keeps the first colour", "keeps")):
        rates[question][name(vanilla)] = next(iter(results[key].values()))["a"]
        for run, r in results[key].items():
            rates[question][name(run)] = r["b"]
    rates["keeps the first colour"][name(control)] = results["noise"]["a"]
    return rates
