"""Layouts for the seedling transplant: objects with their own prompts and boxes, read from YAML.

``data/prompts/drawbench_colors.yaml`` holds DrawBench's two-object Colors prompts with the boxes
we chose (DrawBench gives none) and, under ``toy:``, their toy-world analogues.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sdprobe.analysis.boxes import Box
from sdprobe.paths import DATA_DIR

__all__ = ["Box", "LayoutPrompt", "PlacedObject", "load_layout_prompts", "require_word"]


@dataclass(frozen=True)
class PlacedObject:
    """One object to place: its own prompt (``"a red car"``), its box, the noun that names it and,
    optionally, its attribute word (``"red"``, for :func:`attention_assignment_score`).

    ``word`` defaults to the prompt's last word; it must occur in the full prompt of
    :func:`~sdprobe.probes.transplant.transplant_seedlings`.
    """

    prompt: str
    box: Box
    word: str = ""
    attribute: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise ValueError(f"an object's prompt is text with at least one word, not {self.prompt!r}")
        object.__setattr__(self, "box", Box.of(self.box))
        if not self.word:
            named = prompt_words(self.prompt)
            if not named:
                raise ValueError(f"the object prompt {self.prompt!r} has no word to name the object by; "
                                 "give word= or a prompt with words")
            object.__setattr__(self, "word", named[-1])
        require_word(self.word, self.prompt, what="object prompt")
        if self.attribute:
            require_word(self.attribute, self.prompt, what="object prompt")


@dataclass(frozen=True)
class LayoutPrompt:
    """A prompt with its objects placed in boxes, and the background prompt TAUE grows first."""

    prompt: str
    objects: tuple[PlacedObject, ...]
    background: str

    def __post_init__(self) -> None:
        for o in self.objects:
            require_word(o.word, self.prompt, what="prompt")
            if o.attribute:
                require_word(o.attribute, self.prompt, what="prompt")


def load_layout_prompts(path: str | Path | None = None, *, section: str = "prompts") -> list[LayoutPrompt]:
    """Read a layout prompt file such as ``data/prompts/drawbench_colors.yaml`` (the default).

    The file has ``background``, named ``boxes`` and ``prompts``, each a ``prompt`` with
    ``objects`` given as ``{noun, colour, box}`` (a box name or ``[x0, y0, x1, y1]``).
    ``section="toy"`` reads the toy world's analogue kept under ``toy:`` (its own ``background``
    and ``prompts``, the file's boxes).
    """
    path = Path(path) if path is not None else DATA_DIR / "prompts" / "drawbench_colors.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"no layout prompt file at {path}")
    spec = yaml.safe_load(path.read_text())
    named = spec.get("boxes", {})
    if section != "prompts":
        if section not in spec or section == "boxes":
            options = ["prompts", *(k for k, v in spec.items() if isinstance(v, dict) and "prompts" in v)]
            raise ValueError(f"{path.name} has no section {section!r}; choose one of {options}")
        spec = spec[section]
    return [_layout_prompt(entry, named, spec.get("background", "")) for entry in spec["prompts"]]


def _layout_prompt(entry: dict[str, Any], named: dict[str, Any], background: str) -> LayoutPrompt:
    objects = []
    for o in entry["objects"]:
        box = o["box"]
        if isinstance(box, str):
            if box not in named:
                raise ValueError(f"box {box!r} of {entry['prompt']!r} is not one of the named boxes {sorted(named)}")
            box = named[box]
        colour = o.get("colour", "")
        text = f"a {colour} {o['noun']}" if colour else f"a {o['noun']}"
        objects.append(PlacedObject(text, Box.of(box), word=o["noun"], attribute=colour))
    return LayoutPrompt(entry["prompt"], tuple(objects), entry.get("background", background))


def prompt_words(text: str) -> list[str]:
    return re.findall(r"[\w'-]+", text.lower())


def require_word(word: str, prompt: str, *, what: str = "prompt") -> None:
    """Raise ``ValueError`` (naming the prompt's words) unless ``word`` occurs in ``prompt``."""
    parts = prompt_words(word)
    words = prompt_words(prompt)
    n = len(parts)
    if not parts or not any(words[i : i + n] == parts for i in range(len(words) - n + 1)):
        raise ValueError(f"the word {word!r} is not in the {what} {prompt!r}; words there: {words}")
