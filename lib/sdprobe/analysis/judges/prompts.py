"""What a prompt asks for, written down rather than parsed: objects, colours, counts, a place.

Published evaluation judges a picture against structured metadata kept beside each prompt
(GenEval's ``include`` clauses: a class, a count, optionally a colour), not against a parse of
its words. The toy world's prompts are the exception: the world has a grammar of its own, and
:meth:`StructuredPrompt.toy` reads it. Real prompt sets carry their metadata in
``data/prompts/*.yaml`` (:func:`load_prompt_set`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["COLOURS", "Edit", "ObjectClause", "StructuredPrompt", "load_prompt_set", "prompt_sets"]

#: GenEval's ten colour names (Ghosh et al. 2023), the colours its zero-shot classifier reads.
COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white")


@dataclass(frozen=True)
class ObjectClause:
    """One object a prompt asks for: its noun (``"dog"``, ``"cell phone"``), the colour named
    for it (None: any) and how many."""

    noun: str
    colour: str | None = None
    count: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.noun, str) or not self.noun.strip():
            raise ValueError(f"an object clause names a noun, not {self.noun!r}")
        if self.colour is not None and (not isinstance(self.colour, str) or not self.colour.strip()):
            raise ValueError(f"a colour is a word such as 'red', not {self.colour!r}")
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise ValueError(f"an object's count is a whole number of at least 1, not {self.count!r}")


@dataclass(frozen=True)
class Edit:
    """What an edited prompt changes (chapter 04): ``attribute`` (``"colour"`` or ``"noun"``) of
    object ``index``, from ``before`` to ``after``."""

    attribute: str
    before: str
    after: str
    index: int = 0

    def __post_init__(self) -> None:
        if self.attribute not in ("colour", "noun"):
            raise ValueError(f"an edit changes the 'colour' or the 'noun' of an object, not {self.attribute!r}")


@dataclass(frozen=True)
class StructuredPrompt:
    """A prompt and what it asks for.

    Attributes:
        text: the prompt as the model reads it.
        objects: the objects asked for, in the prompt's order (at least one).
        background: the place the prompt names (``"field"``, ``"snow"``), or None.
        backgrounds: the places a judge chooses among when it reads the place (the prompt set's
            places); empty: the judge reads no place.
        edit: what the prompt changes against its source prompt, for an edit pair.
    """

    text: str
    objects: tuple[ObjectClause, ...]
    background: str | None = None
    backgrounds: tuple[str, ...] = ()
    edit: Edit | None = None
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.text, str) or not self.text.strip():
            raise ValueError(f"a prompt is non-empty text, not {self.text!r}")
        objects = tuple(self.objects)
        if not objects or not all(isinstance(o, ObjectClause) for o in objects):
            raise ValueError(f"{self.text!r}: a structured prompt asks for at least one ObjectClause")
        object.__setattr__(self, "objects", objects)
        object.__setattr__(self, "backgrounds", tuple(self.backgrounds))
        if self.background is not None and self.backgrounds and self.background not in self.backgrounds:
            raise ValueError(f"{self.text!r}: background {self.background!r} is not among {list(self.backgrounds)}")

    @property
    def nouns(self) -> tuple[str, ...]:
        """The distinct nouns asked for, in order."""
        return tuple(dict.fromkeys(o.noun for o in self.objects))

    @property
    def counting(self) -> bool:
        """True when some object is asked for more than once (GenEval's ``counting`` task)."""
        return any(o.count > 1 for o in self.objects)

    @classmethod
    def toy(cls, text: str) -> StructuredPrompt:
        """A toy-world prompt read by the world's own grammar (its shapes are the nouns).

        Raises:
            ValueError: the text names none of the world's shapes.
        """
        from sdprobe.world import BACKGROUNDS, parse_prompt

        spec = parse_prompt(text)
        objects = tuple(ObjectClause(shape, colour, count) for colour, shape, count in spec.groups)
        return cls(text, objects, spec.background, tuple(BACKGROUNDS))

    @classmethod
    def from_mapping(cls, record: Mapping[str, Any], *, backgrounds: Sequence[str] = (), where: str = "") -> StructuredPrompt:
        """From a prompt file's record ``{prompt, objects: [{noun, colour?, count?}], background?}``.

        Raises:
            ValueError: a malformed record, naming ``where``.
        """
        at = f"{where}: " if where else ""
        if not isinstance(record, Mapping) or "prompt" not in record or "objects" not in record:
            raise ValueError(f"{at}a prompt record has 'prompt' and 'objects', got {record!r}")
        objects = record["objects"]
        if not isinstance(objects, list) or not objects:
            raise ValueError(f"{at}{record['prompt']!r}: 'objects' is a non-empty list of {{noun, colour, count}}")
        clauses = []
        for item in objects:
            if not isinstance(item, Mapping) or "noun" not in item:
                raise ValueError(f"{at}{record['prompt']!r}: an object is {{noun, colour?, count?}}, got {item!r}")
            clauses.append(ObjectClause(item["noun"], item.get("colour"), item.get("count", 1)))
        edit = record.get("edit")
        return cls(record["prompt"], tuple(clauses), record.get("background"), tuple(backgrounds),
                   Edit(**edit) if isinstance(edit, Mapping) else None,
                   {k: v for k, v in record.items() if k not in ("prompt", "objects", "background", "edit")})


def prompt_sets() -> list[str]:
    """The names of the prompt files in ``data/prompts``."""
    from sdprobe.paths import DATA_DIR

    return sorted(p.stem for p in (DATA_DIR / "prompts").glob("*.yaml"))


def load_prompt_set(name: str, section: str = "prompts", *, folder: Path | str | None = None) -> list[StructuredPrompt]:
    """The structured prompts of ``data/prompts/<name>.yaml``, section ``section``.

    A file holds ``backgrounds`` (the places its prompts choose among, optional) and one or more
    lists of records ``{prompt, objects: [{noun, colour?, count?}], background?, edit?}``.

    Raises:
        ValueError: no such file or section (the message lists those there), or a malformed record.
    """
    import yaml

    from sdprobe.paths import DATA_DIR

    path = Path(folder or DATA_DIR / "prompts") / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"no prompt set {name!r} ({path} is missing); there are: {', '.join(prompt_sets())}")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    records = data.get(section)
    if not isinstance(records, list):
        lists = [k for k, v in data.items() if isinstance(v, list) and v and isinstance(v[0], Mapping)]
        raise ValueError(f"{path.name} has no list of prompts {section!r}; its lists: {', '.join(lists) or 'none'}")
    backgrounds = tuple(data.get("backgrounds") or ())
    return [StructuredPrompt.from_mapping(r, backgrounds=backgrounds, where=f"{path.name} {section}[{i}]")
            for i, r in enumerate(records)]
