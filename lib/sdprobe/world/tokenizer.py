"""A CLIP tokenizer whose byte-pair merges are learned from the toy world's captions.

CLIP's tokenizer (Radford et al. 2021) is byte-level BPE: text is lower-cased, split into words,
each word becomes a sequence of byte characters with ``</w>`` on the last one, and the learned
merges join frequent neighbouring pairs. We learn the merges the classic way (Sennrich et al.
2016): count adjacent symbol pairs over the word frequencies of the caption corpus, merge the
most frequent, repeat until every word of the corpus is one token. The id layout follows CLIP:
the 256 byte characters, their ``</w>`` forms, the merges, then ``<|startoftext|>`` and
``<|endoftext|>``; like SD 1.x, prompts are padded with the end token to 77 positions.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

from transformers import CLIPTokenizer

from sdprobe.models.tokens import byte_table

__all__ = ["BOS", "EOS", "MAX_LENGTH", "build_tokenizer", "learn_merges"]

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
MAX_LENGTH = 77


def _words(text: str) -> list[str]:
    # CLIP splits letters and digits apart and keeps runs of other non-space characters.
    return re.findall(r"[a-z]+|[0-9]|[^\sa-z0-9]+", text.lower())


def learn_merges(corpus: list[str], max_merges: int = 2000) -> list[tuple[str, str]]:
    """Byte-pair merges learned from ``corpus``, most frequent first, ties broken by the pair
    itself so the result is deterministic."""
    byte_char = byte_table()
    freq = Counter(w for line in corpus for w in _words(line))
    seqs: dict[tuple[str, ...], int] = {}
    for word, n in freq.items():
        chars = [byte_char[b] for b in word.encode("utf-8")]
        seqs[tuple(chars[:-1] + [chars[-1] + "</w>"])] = n
    merges: list[tuple[str, str]] = []
    while len(merges) < max_merges:
        pairs: Counter[tuple[str, str]] = Counter()
        for seq, n in seqs.items():
            for pair in zip(seq, seq[1:]):
                pairs[pair] += n
        if not pairs:
            break  # every word is a single token
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        joined = best[0] + best[1]
        new: dict[tuple[str, ...], int] = {}
        for seq, n in seqs.items():
            out, i = [], 0
            while i < len(seq):
                if i + 1 < len(seq) and (seq[i], seq[i + 1]) == best:
                    out.append(joined)
                    i += 2
                else:
                    out.append(seq[i])
                    i += 1
            new[tuple(out)] = new.get(tuple(out), 0) + n
        seqs = new
    return merges


def build_tokenizer(corpus: list[str], save_to: str | Path | None = None) -> CLIPTokenizer:
    """A :class:`~transformers.CLIPTokenizer` with merges learned from ``corpus``.

    With ``save_to`` it is written there (``vocab.json``, ``merges.txt`` and configs), the way a
    diffusers pipeline folder keeps its ``tokenizer/``.
    """
    chars = list(byte_table().values())
    merges = learn_merges(corpus)
    tokens = chars + [c + "</w>" for c in chars] + [a + b for a, b in merges] + [BOS, EOS]
    vocab: dict[str, int] = {}
    for t in tokens:
        vocab.setdefault(t, len(vocab))
    tok = CLIPTokenizer(
        vocab=vocab,
        merges=list(merges),
        bos_token=BOS,
        eos_token=EOS,
        unk_token=EOS,
        pad_token=EOS,
        model_max_length=MAX_LENGTH,
    )
    if save_to is not None:
        save_to = Path(save_to)
        tok.save_pretrained(str(save_to))
        # The slow-tokenizer files too, the layout of CompVis/stable-diffusion-v1-4's tokenizer/.
        (save_to / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
        (save_to / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    return tok
