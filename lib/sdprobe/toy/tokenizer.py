"""A CLIP tokenizer whose byte-pair merges are learned from the toy world's captions.

CLIP's own tokenizer is byte-level BPE over web text (49,408 entries); ours keeps its format and
id layout (256 byte symbols, the same 256 with the end-of-word marker ``</w>``, learned merges,
then ``<|startoftext|>`` and ``<|endoftext|>``) but learns only as many merges as the world's
few dozen words need. Any text still tokenizes: unknown words fall back to byte symbols.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from transformers import CLIPTokenizer

__all__ = ["BOS", "EOS", "build_tokenizer", "learn_merges", "write_tokenizer_files"]

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
_WORD = re.compile(r"[a-z]+|[0-9]|[^\sa-z0-9]+")


def _byte_symbols() -> list[str]:
    """CLIP's printable stand-ins for the 256 byte values, in CLIP's order."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    codes, extra = printable[:], 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


def learn_merges(texts: Iterable[str], max_merges: int = 400) -> list[tuple[str, str]]:
    """Greedy byte-pair merges: repeatedly join the most frequent adjacent pair (ties by order).

    Words are lower-cased, split as CLIP splits them, and end with ``</w>`` on their last symbol.
    Stops when no pair occurs twice or after ``max_merges``.
    """
    words = Counter(w for text in texts for w in _WORD.findall(text.lower()))
    split = {w: tuple(w[:-1]) + (w[-1] + "</w>",) for w in sorted(words)}
    merges: list[tuple[str, str]] = []
    while len(merges) < max_merges:
        pairs: Counter[tuple[str, str]] = Counter()
        for w, symbols in split.items():
            for pair in zip(symbols, symbols[1:]):
                pairs[pair] += words[w]
        if not pairs:
            break
        best, count = max(sorted(pairs.items()), key=lambda kv: kv[1])
        if count < 2:
            break
        merges.append(best)
        split = {w: _merge(symbols, best) for w, symbols in split.items()}
    return merges


def _merge(symbols: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    out: list[str] = []
    i = 0
    while i < len(symbols):
        if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == pair:
            out.append(symbols[i] + symbols[i + 1])
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return tuple(out)


def write_tokenizer_files(merges: list[tuple[str, str]], folder: Path | str) -> tuple[Path, Path]:
    """Write ``vocab.json`` and ``merges.txt`` in CLIP's format; return their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    symbols = _byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols]
    tokens += [a + b for a, b in merges if a + b not in tokens]
    tokens += [BOS, EOS]
    vocab_path, merges_path = folder / "vocab.json", folder / "merges.txt"
    vocab_path.write_text(json.dumps({t: i for i, t in enumerate(tokens)}, ensure_ascii=False))
    merges_path.write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    return vocab_path, merges_path


def build_tokenizer(merges: list[tuple[str, str]], folder: Path | str) -> CLIPTokenizer:
    """A ``CLIPTokenizer`` over the learned merges: 77 positions, padded with the end token as in SD 1.x."""
    vocab_path, merges_path = write_tokenizer_files(merges, folder)
    return CLIPTokenizer(str(vocab_path), str(merges_path), bos_token=BOS, eos_token=EOS, unk_token=EOS,
                         pad_token=EOS, model_max_length=77)
