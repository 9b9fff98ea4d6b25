"""Prompt tokens: which context positions hold which word, and whether a prompt fits.

CLIP's tokenizer (the one Stable Diffusion uses) is byte-level BPE: a word is one or more
sub-tokens, the last ending in ``</w>``; position 0 is the start token and the first end token
closes the prompt (SD 1.x pads with more end tokens, SD 2.x with ``"!"``). Probes that ask for a
word's map, the seedling transplant's region search and the chapters all look words up here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "PromptTooLongError", "WordNotInPromptError", "byte_table", "check_prompt_length", "decode_bytes", "prompt_end",
    "prompt_tokens", "token_indices", "words",
]


class PromptTooLongError(ValueError):
    """Text that does not fit the text encoder's context (77 positions, start and end included)."""


class WordNotInPromptError(ValueError):
    """A word that is not in the prompt; the message lists the prompt's words."""


def byte_table() -> dict[int, str]:
    """CLIP's byte → printable character table of byte-level BPE; its insertion order is CLIP's id
    order (the printable bytes first, the others shifted past 255)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def prompt_end(tokens: Sequence[str], eos: str) -> int:
    """Position of the first end token after the start token (``len(tokens)`` if none)."""
    return next((i for i in range(1, len(tokens)) if tokens[i] == eos), len(tokens))


def _word_spans(tokens: Sequence[str], eos: str) -> list[tuple[str, list[int]]]:
    spans, pieces, where = [], [], []
    for i in range(1, prompt_end(tokens, eos)):
        pieces.append(tokens[i].removesuffix("</w>"))
        where.append(i)
        if tokens[i].endswith("</w>"):
            spans.append((decode_bytes("".join(pieces)), where))
            pieces, where = [], []
    if pieces:
        spans.append((decode_bytes("".join(pieces)), where))
    return spans


def decode_bytes(text: str) -> str:
    """A word as written (``"日本語"``, ``"🐕"``) from byte-level BPE characters (``"æĹ¥æľ¬èªŀ"``).
    Text that is not made of byte characters comes back unchanged."""
    inverse = _inverse_byte_table()
    if not text or any(c not in inverse for c in text):
        return text
    return bytes(inverse[c] for c in text).decode("utf-8", errors="replace")


def _inverse_byte_table() -> dict[str, int]:
    global _INVERSE
    if _INVERSE is None:
        _INVERSE = {c: b for b, c in byte_table().items()}
    return _INVERSE


_INVERSE: dict[str, int] | None = None


def words(tokens: Sequence[str], eos: str) -> list[str]:
    """The prompt's words as the tokenizer split them (punctuation is a word of its own)."""
    return [w for w, _ in _word_spans(tokens, eos)]


def token_indices(tokens: Sequence[str], word: str, tokenizer: Any, *, what: str = "prompt") -> list[int]:
    """Context positions of every sub-token of every occurrence of ``word`` (whole words only)
    among ``tokens`` (the full context, start token first).

    Raises:
        WordNotInPromptError: the word is not there; the message lists the words that are, and
            says when the prompt filled the whole context (the pipeline may have cut it).
    """
    end = prompt_end(tokens, tokenizer.eos_token)
    wanted = tokenizer.tokenize(word)
    hits: list[int] = []
    for start in range(1, end - len(wanted) + 1):
        at_word_start = start == 1 or tokens[start - 1].endswith("</w>")
        if wanted and at_word_start and list(tokens[start:start + len(wanted)]) == wanted:
            hits.extend(range(start, start + len(wanted)))
    if not hits:
        listed = ", ".join(repr(w) for w in words(tokens, tokenizer.eos_token)) or "(none: an empty prompt)"
        note = ""
        if end == len(tokens) - 1:
            note = (f" The prompt fills the whole {len(tokens)}-token context, so the pipeline may have "
                    "truncated it (diffusers warns when it does); words past the cut have no map.")
        raise WordNotInPromptError(f"{word!r} is not a word of the {what}; its words are: {listed}.{note}")
    return hits


def _tokenizer(pipe: Any) -> Any:
    return pipe.tokenizer if getattr(pipe, "tokenizer", None) is not None else pipe.tokenizer_2


def check_prompt_length(pipe: Any, prompt: str, *, what: str = "prompt") -> int:
    """The number of tokens of ``prompt`` (without start and end); raise if the pipeline would cut it.

    Raises:
        PromptTooLongError: the prompt needs more than ``model_max_length - 2`` (75) tokens.
        TypeError: ``prompt`` is not a string.
    """
    if not isinstance(prompt, str):
        raise TypeError(f"a {what} is a string, not {type(prompt).__name__}")
    tokenizer = _tokenizer(pipe)
    count = len(tokenizer(prompt, truncation=False, verbose=False).input_ids) - 2
    limit = tokenizer.model_max_length - 2
    if count > limit:
        raise PromptTooLongError(
            f"the {what} has {count} tokens but the text encoder's context holds {limit} (plus start and end); "
            f"the pipeline would silently keep only the first {limit}. Shorten the {what}."
        )
    return count


def prompt_tokens(pipe: Any, prompt: str, *, what: str = "prompt") -> list[str]:
    """The tokens the text encoder sees for ``prompt``: its whole context, start token first.

    Raises:
        PromptTooLongError: the prompt would be cut (:func:`check_prompt_length`).
    """
    check_prompt_length(pipe, prompt, what=what)
    tokenizer = _tokenizer(pipe)
    ids = tokenizer(prompt, padding="max_length", max_length=tokenizer.model_max_length, truncation=True).input_ids
    return tokenizer.convert_ids_to_tokens(ids)
