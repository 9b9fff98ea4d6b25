"""Encode several prompts as one CLIP sequence under a chosen attention mask: the hopping mask.

Zhao et al. (NLP2023, "sequential image generation with a hopping mask"; code at
github.com/KYuuto1006/sdm_hopping_mask) join a story's prompts with a separator, run the CLIP
text encoder once over the joint sequence under a mask that lets each prompt see the one before
it, and cut the result back into one 77-token embedding per prompt::

    embeds = sdprobe.encode_prompts(pipe, ["John throws out a baseball.",
                                           "John is waving a baseball bat."], mask="hopping")
    embeds.prompt_embeds                  # [N, 77, D], what the stock pipeline takes
    images = sdprobe.generate_per_prompt(pipe, embeds, seed=1212, num_inference_steps=50)

The joint sequence is ``BOS w(1) SEP w(2) SEP ... w(N) EOS pad...`` where ``w(k)`` are prompt
``k``'s word tokens and SEP is the end token ``<|endoftext|>``, as in the authors' code. Its
layout (:class:`PromptLayout`) comes from tokenising each prompt, never from searching for pad
ids (SD 2.x pads with ``"!"``). Three masks (:data:`MASK_KINDS`):

``"causal"``
    vanilla CLIP: every prompt encoded alone. :func:`build_mask` draws CLIP's own causal mask
    over the joint sequence for comparison (Fig. 4, left).
``"hopping"``
    the paper's Eq. 5 taken literally: token ``i`` attends to ``j`` iff ``j <= i`` and
    ``P(i) - P(j) <= 1``, where ``P`` is the prompt a token belongs to; separators are masked
    out. Reading choices for what Eq. 5 leaves open: the start token is seen by every token
    (as in vanilla CLIP), a separator attends only to itself (a fully masked row would become
    uniform attention over all 77 positions, future prompts included), and the end token and
    padding belong to the last prompt. Prompt ``k`` never depends on a later prompt.
``"hopping-code"``
    what the authors' public code does (``_build_multihop_attention_mask``), rebuilt from the
    layout: BOS and prompt 1 are causal; prompt 2 sees BOS, prompt 1, the first separator and
    itself; prompt ``k >= 3`` sees prompt ``k-1``, its separator and itself but not BOS; the
    separator rows are fully masked, which with an additive mask means uniform attention over
    the whole sequence, so later prompts leak into earlier ones from the second layer on; the
    end-token and padding rows are causal. (On a sequence that fills all 77 positions the code
    finds no padding run and leaves the end-token row fully masked too; we do the same. On
    SD 2.x, which pads with ``"!"``, the code as written would find no padding run at all; we
    keep the SD 1.x behaviour, which is what it was written for.)

For both hopping kinds each prompt's embedding takes its word positions from the joint
encoding and its start, end and padding positions from encoding the prompt alone, as the
authors' code does. Prompt 1 is therefore identical to vanilla under both.

The mask reaches the encoder through transformers' public 4-D float ``attention_mask``
(``[B, 1, 77, 77]``, 0 where attention is allowed and ``finfo(dtype).min`` elsewhere), which
``CLIPTextModel`` 5.x uses *instead of* its causal mask under the eager and SDPA attention
implementations. Flash attention cannot take an arbitrary mask and is refused.

SDXL: both text encoders run under the same mask; the embedding is the concatenation of their
penultimate hidden states, as the SDXL pipeline builds it, and the pooled embedding is
``text_encoder_2``'s projection of each prompt encoded alone (at a joint sequence's first end
token, where CLIP pools, sits a separator, whose state is meaningless under the code's mask).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from sdprobe.models import family_of
from sdprobe.models.tokens import PromptTooLongError, check_prompt_length

__all__ = [
    "MASK_KINDS",
    "PromptEmbeds",
    "PromptLayout",
    "PromptTooLongError",
    "additive_mask",
    "build_mask",
    "encode_prompts",
    "generate_per_prompt",
    "prompt_layout",
]

#: Mask kinds accepted by :func:`build_mask` and :func:`encode_prompts`.
MASK_KINDS = ("causal", "hopping", "hopping-code")

#: Attention implementations that apply a custom 4-D float mask (``flex_attention`` untested).
_MASKABLE_ATTENTION = ("eager", "sdpa")


# ----------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class PromptLayout:
    """Where each prompt sits in the joint sequence ``BOS w(1) SEP w(2) ... w(N) EOS pad...``.

    Attributes:
        lengths: number of word tokens of each prompt (start and end tokens excluded).
        max_length: sequence length of the text encoder (77 for CLIP).

    Raises:
        ValueError: no prompts, or a prompt without word tokens.
        PromptTooLongError: the joint sequence is longer than ``max_length``; the message gives
            the count and the limit.
    """

    lengths: tuple[int, ...]
    max_length: int = 77

    def __post_init__(self) -> None:
        object.__setattr__(self, "lengths", tuple(int(n) for n in self.lengths))
        if not self.lengths:
            raise ValueError("a layout needs at least one prompt")
        if min(self.lengths) < 1:
            raise ValueError(f"every prompt needs at least one word token; lengths were {list(self.lengths)}")
        if self.used > self.max_length:
            raise PromptTooLongError(
                f"the joint sequence has {self.used} tokens (start + {'+'.join(map(str, self.lengths))} "
                f"prompt tokens + {len(self.lengths) - 1} separator(s) + end), but the text encoder takes "
                f"at most {self.max_length}; shorten or drop prompts"
            )

    @property
    def n_prompts(self) -> int:
        return len(self.lengths)

    @property
    def used(self) -> int:
        """The number of tokens before the padding (start, all words, ``N - 1`` separators and the end token)."""
        return sum(self.lengths) + len(self.lengths) + 1

    @property
    def spans(self) -> list[slice]:
        """Positions of each prompt's word tokens in the joint sequence."""
        out, start = [], 1
        for n in self.lengths:
            out.append(slice(start, start + n))
            start += n + 1
        return out

    @property
    def separators(self) -> list[int]:
        """Positions of the ``N - 1`` separators."""
        return [span.stop for span in self.spans[:-1]]

    @property
    def end(self) -> int:
        """Position of the end token."""
        return self.spans[-1].stop

    def roles(self) -> list[str]:
        """Role of every position: ``"start"``, ``"word"``, ``"sep"``, ``"end"`` or ``"pad"``."""
        roles = ["pad"] * self.max_length
        roles[0] = "start"
        for span in self.spans:
            roles[span] = ["word"] * (span.stop - span.start)
        for s in self.separators:
            roles[s] = "sep"
        roles[self.end] = "end"
        return roles

    def prompt_index(self) -> list[int]:
        """``P(i)`` of Eq. 5 for every position: 1…N for words and for the separator closing a
        prompt, 0 for the start token, N for the end token and padding."""
        index = [self.n_prompts] * self.max_length
        index[0] = 0
        for k, span in enumerate(self.spans, start=1):
            index[span.start : span.stop + 1] = [k] * (span.stop - span.start + 1)
        return index

    def labels(self) -> list[str]:
        """Short tick labels: ``BOS``, ``T1``…``Tn`` (numbered across prompts, as in the paper),
        ``SEP``, ``EOS``, ``pad``."""
        out, t = [], 0
        for role in self.roles():
            if role == "word":
                t += 1
                out.append(f"T{t}")
            else:
                out.append({"start": "BOS", "sep": "SEP", "end": "EOS", "pad": "pad"}[role])
        return out


def as_layout(layout: PromptLayout | Sequence[int]) -> PromptLayout:
    return layout if isinstance(layout, PromptLayout) else PromptLayout(tuple(layout))


# ----------------------------------------------------------------------------- masks


def check_mask_kind(kind: str) -> None:
    if kind not in MASK_KINDS:
        raise ValueError(f"unknown mask kind {kind!r}; choose one of {', '.join(repr(k) for k in MASK_KINDS)}")


def build_mask(layout: PromptLayout | Sequence[int], kind: str) -> torch.Tensor:
    """Which position may attend to which: a boolean ``[L, L]`` tensor, ``True`` = allowed.

    Rows are queries ``i``, columns keys ``j``; ``L`` is ``layout.max_length``. A row with no
    ``True`` is *fully masked*: under an additive mask it becomes uniform attention.

    Args:
        layout: a :class:`PromptLayout`, or the word-token count of each prompt.
        kind: one of :data:`MASK_KINDS` (see the module docstring).
    """
    check_mask_kind(kind)
    layout = as_layout(layout)
    size = layout.max_length
    causal = torch.ones(size, size, dtype=torch.bool).tril()
    if kind == "causal":
        return causal
    if kind == "hopping":
        return _hopping_eq5(layout) & causal
    return _hopping_code(layout) & causal


def _hopping_eq5(layout: PromptLayout) -> torch.Tensor:
    """Eq. 5: ``P(i) - P(j) <= 1``; the start token visible to all; separators only see themselves."""
    p = torch.tensor(layout.prompt_index())
    roles = layout.roles()
    sep = torch.tensor([r == "sep" for r in roles])
    start = torch.tensor([r == "start" for r in roles])
    near = (p[:, None] - p[None, :]) <= 1
    allowed = (near | start[None, :]) & ~sep[None, :] & ~sep[:, None]
    return allowed | torch.diag(sep)


def _hopping_code(layout: PromptLayout) -> torch.Tensor:
    """The authors' segments: segment ``k`` (BOS joins prompt 1) sees segment ``k-1`` up to its
    own end; separator rows stay empty; end and padding rows see everything (then made causal)."""
    size = layout.max_length
    allowed = torch.zeros(size, size, dtype=torch.bool)
    starts = [0] + [s + 1 for s in layout.separators]  # segment starts; segment 1 holds BOS
    stops = layout.separators + [layout.end]
    for k, (start, stop) in enumerate(zip(starts, stops)):
        allowed[start:stop, starts[max(k - 1, 0)] : stop] = True
    if layout.end < size - 1:  # the code opens rows only where two end/pad ids follow each other
        allowed[layout.end :] = True
    return allowed


def additive_mask(allowed: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A boolean ``[L, L]`` mask → the additive float ``[1, 1, L, L]`` transformers takes
    (0 where allowed, ``finfo(dtype).min`` elsewhere). Additive, not boolean: transformers'
    eager attention adds a boolean mask to the logits as 0/1."""
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[None, None]


# ----------------------------------------------------------------------------- tokenisation


@dataclass(frozen=True)
class _Tokens:
    """One tokenizer's view of the prompts."""

    words: list[list[int]]  # word ids of each prompt
    alone: torch.Tensor  # [N, 77] each prompt as the stock pipeline tokenises it
    joint: torch.Tensor  # [1, 77] the joint sequence


def _tokenizers(pipe) -> list[tuple[Any, Any]]:
    pairs = [(pipe.tokenizer, pipe.text_encoder)]
    if getattr(pipe, "text_encoder_2", None) is not None:
        pairs.append((pipe.tokenizer_2, pipe.text_encoder_2))
    return [(t, e) for t, e in pairs if t is not None and e is not None]


def _word_ids(tokenizer, prompt: str, k: int) -> list[int]:
    ids = tokenizer(prompt, truncation=False, verbose=False).input_ids
    if ids[:1] != [tokenizer.bos_token_id] or ids[-1:] != [tokenizer.eos_token_id]:
        raise ValueError(f"prompt {k + 1}: the tokenizer did not frame it with start and end tokens")
    words = ids[1:-1]
    if not words:
        raise ValueError(f"prompt {k + 1} ({prompt!r}) is empty: it has no tokens")
    special = {tokenizer.bos_token_id, tokenizer.eos_token_id}
    if special & set(words):
        raise ValueError(
            f"prompt {k + 1} ({prompt!r}) contains a start or end token; pass the prompts as a list "
            "instead of joining them with '<|endoftext|>'"
        )
    return words


def _tokenize(tokenizer, prompts: Sequence[str], max_length: int) -> tuple[_Tokens, PromptLayout]:
    words = [_word_ids(tokenizer, p, k) for k, p in enumerate(prompts)]
    layout = PromptLayout(tuple(len(w) for w in words), max_length)
    sep = tokenizer.eos_token_id  # the authors' separator: the literal "<|endoftext|>"
    joint = [tokenizer.bos_token_id]
    for k, w in enumerate(words):
        joint += w + ([sep] if k < len(words) - 1 else [tokenizer.eos_token_id])
    joint += [tokenizer.pad_token_id] * (max_length - len(joint))
    alone = tokenizer(list(prompts), padding="max_length", max_length=max_length, truncation=True,
                      return_tensors="pt").input_ids
    return _Tokens(words, alone, torch.tensor([joint])), layout


def _check_prompts(prompts: Sequence[str]) -> list[str]:
    if isinstance(prompts, str):
        raise TypeError("prompts must be a list of strings, not one string")
    if not isinstance(prompts, (list, tuple)):
        raise TypeError(f"prompts must be a list of strings, not {type(prompts).__name__}")
    prompts = list(prompts)
    if not prompts:
        raise ValueError("prompts is empty: give at least one prompt")
    for k, p in enumerate(prompts):
        if not isinstance(p, str):
            raise TypeError(f"prompt {k + 1} is a {type(p).__name__}, not a string")
        if not p.strip():
            raise ValueError(f"prompt {k + 1} is empty")
    return prompts


def prompt_layout(pipe, prompts: Sequence[str]) -> PromptLayout:
    """The joint-sequence layout of ``prompts`` under ``pipe``'s tokenizer(s).

    Raises:
        ValueError: an empty list, an empty prompt, or tokenizers that disagree (SDXL).
        PromptTooLongError: the joint sequence exceeds the encoder's length.
    """
    prompts = _check_prompts(prompts)
    layouts = [_tokenize(t, prompts, _max_length(t, e))[1] for t, e in _tokenizers(pipe)]
    if any(lay != layouts[0] for lay in layouts[1:]):
        raise ValueError(f"the text encoders' tokenizers split the prompts differently: {layouts}")
    return layouts[0]


def _max_length(tokenizer, encoder) -> int:
    return min(int(tokenizer.model_max_length), int(encoder.config.max_position_embeddings))


# ----------------------------------------------------------------------------- encoding


@dataclass(frozen=True)
class PromptEmbeds:
    """Per-prompt text embeddings, ready for a stock pipeline.

    Attributes:
        prompt_embeds: ``[N, 77, D]``, one row per prompt.
        pooled: ``[N, D2]`` pooled embeddings (SDXL), else ``None``.
        negative_embeds: ``[1, 77, D]`` the unconditional embedding (vanilla).
        negative_pooled: ``[1, D2]`` (SDXL), else ``None``.
        prompts: the prompts, in order.
        mask: the mask kind they were encoded under.
        layout: where each prompt sat in the joint sequence.
        tokens: the joint sequence as token strings (first tokenizer), for figure labels.
    """

    prompt_embeds: torch.Tensor
    pooled: torch.Tensor | None
    negative_embeds: torch.Tensor
    negative_pooled: torch.Tensor | None
    prompts: tuple[str, ...]
    mask: str
    layout: PromptLayout
    tokens: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.prompts)

    def pipe_kwargs(self, index: int) -> dict[str, torch.Tensor]:
        """The embedding keywords for a pipeline call that renders prompt ``index`` alone."""
        return self.batch_kwargs([index])

    def batch_kwargs(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        """The embedding keywords for one pipeline call that renders the prompts ``indices``:
        ``prompt_embeds`` ``[len(indices), 77, d]`` and the empty prompt's embeddings repeated."""
        rows, n = list(indices), len(indices)
        kwargs = {
            "prompt_embeds": self.prompt_embeds[rows],
            "negative_prompt_embeds": self.negative_embeds.expand(n, -1, -1),
        }
        if self.pooled is not None:
            kwargs["pooled_prompt_embeds"] = self.pooled[rows]
            kwargs["negative_pooled_prompt_embeds"] = self.negative_pooled.expand(n, -1)
        return kwargs


def _check_attention(encoder) -> None:
    inner = getattr(encoder, "text_model", encoder)
    impl = inner.config._attn_implementation
    if impl not in _MASKABLE_ATTENTION:
        raise ValueError(
            f"the text encoder uses attn_implementation={impl!r}, which cannot apply a custom mask; "
            f"load it with one of {', '.join(repr(a) for a in _MASKABLE_ATTENTION)}"
        )


def _run(encoder, ids: torch.Tensor, mask: torch.Tensor | None, sdxl: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Encode ``ids`` ``[B, 77]``; returns the per-token states the pipeline uses ``[B, 77, D]``
    (SDXL: the penultimate layer, no final norm) and the projected pooled output (SDXL
    ``text_encoder_2`` only) or ``None``."""
    out = encoder(ids.to(encoder.device), attention_mask=mask, output_hidden_states=sdxl)
    states = out.hidden_states[-2] if sdxl else out.last_hidden_state
    return states, getattr(out, "text_embeds", None)


@dataclass(frozen=True)
class _Encoded:
    """What one text encoder contributes."""

    states: torch.Tensor  # [N, 77, D] per prompt
    pooled: torch.Tensor | None  # [N, D2] (SDXL text_encoder_2) or None
    negative: torch.Tensor  # [1, 77, D]
    negative_pooled: torch.Tensor | None  # [1, D2] or None
    tokens: _Tokens


def _encode_one(tokenizer, encoder, prompts: list[str], kind: str, sdxl: bool, negative: str) -> _Encoded:
    tokens, layout = _tokenize(tokenizer, prompts, _max_length(tokenizer, encoder))
    states, pooled = _run(encoder, tokens.alone, None, sdxl)
    if kind != "causal":
        allowed = build_mask(layout, kind).to(encoder.device)
        joint, _ = _run(encoder, tokens.joint, additive_mask(allowed, encoder.dtype), sdxl)
        states = states.clone()
        for k, span in enumerate(layout.spans):  # words from the joint encoding, the rest alone
            states[k, 1 : 1 + len(tokens.words[k])] = joint[0, span]
    neg_ids = tokenizer([negative], padding="max_length", max_length=tokens.alone.shape[1],
                        truncation=True, return_tensors="pt").input_ids
    neg_states, neg_pooled = _run(encoder, neg_ids, None, sdxl)
    return _Encoded(states, pooled, neg_states, neg_pooled, tokens)


@torch.no_grad()
def encode_prompts(
    pipe,
    prompts: Sequence[str],
    mask: str = "hopping",
    *,
    negative_prompt: str | None = None,
) -> PromptEmbeds:
    """Encode ``prompts`` jointly under ``mask`` and split them into one embedding each.

    Args:
        pipe: a Stable Diffusion 1.x/2.x or SDXL pipeline (its text encoders with eager or SDPA
            attention).
        prompts: the prompts in story order (at least one; none empty).
        mask: one of :data:`MASK_KINDS`.
        negative_prompt: the unconditional prompt; ``None`` does what the stock pipeline does
            (``""``, or zeros for SDXL with ``force_zeros_for_empty_prompt``).

    Returns:
        :class:`PromptEmbeds` with ``prompt_embeds`` ``[N, 77, D]`` (D = 768 for SD 1.x, 1024
        for SD 2.x, 2048 for SDXL) and, for SDXL, ``pooled`` ``[N, 1280]``.

    Raises:
        ValueError: unknown ``mask`` (the message lists the kinds), an empty list or prompt, or
            an encoder with an attention implementation that ignores custom masks.
        PromptTooLongError: the joint sequence is longer than 77 tokens (count and limit given).
    """
    check_mask_kind(mask)
    prompts = _check_prompts(prompts)
    if negative_prompt is not None:
        check_prompt_length(pipe, negative_prompt, what="negative prompt")  # never cut silently
    pairs = _tokenizers(pipe)
    for _, encoder in pairs:
        _check_attention(encoder)
    layout = prompt_layout(pipe, prompts)
    sdxl = family_of(pipe) == "sdxl"
    zeros = sdxl and negative_prompt is None and bool(pipe.config.get("force_zeros_for_empty_prompt", False))
    parts = [_encode_one(t, e, prompts, mask, sdxl, negative_prompt or "") for t, e in pairs]
    neg = torch.cat([p.negative for p in parts], dim=-1)  # SDXL: both encoders side by side
    pooled, neg_pooled = (parts[-1].pooled, parts[-1].negative_pooled) if sdxl else (None, None)
    if zeros:
        neg, neg_pooled = torch.zeros_like(neg), torch.zeros_like(neg_pooled)
    joint_ids = parts[0].tokens.joint[0].tolist()
    return PromptEmbeds(
        prompt_embeds=torch.cat([p.states for p in parts], dim=-1),
        pooled=pooled,
        negative_embeds=neg,
        negative_pooled=neg_pooled,
        prompts=tuple(prompts),
        mask=mask,
        layout=layout,
        tokens=tuple(pairs[0][0].convert_ids_to_tokens(joint_ids)),
    )


def generate_per_prompt(
    pipe,
    embeds: PromptEmbeds,
    *,
    seed: int = 0,
    same_noise: bool = True,
    batch_size: int = 8,
    **pipe_kwargs: Any,
) -> list[Image.Image]:
    """Render every prompt of ``embeds`` with the stock pipeline, ``batch_size`` prompts a call.

    Prompt ``k`` starts from the noise of its own generator, so the images are those of one call
    per prompt (up to float rounding in batched arithmetic) whatever the batch size.

    Args:
        pipe: the pipeline the embeddings came from.
        embeds: from :func:`encode_prompts`.
        seed: the generator seed.
        same_noise: ``True`` starts every prompt from the same noise (seed ``seed``), as the
            authors did; ``False`` uses seed ``seed + k`` for prompt ``k`` (the control: shared
            noise alone makes images alike).
        batch_size: prompts drawn per pipeline call (the toy model draws a batch of 8 about three
            times faster than one image at a time on a CPU).
        **pipe_kwargs: passed on (``num_inference_steps``, ``guidance_scale``, ``height``…).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    device = pipe.device
    images = []
    for start in range(0, len(embeds), batch_size):
        chunk = range(start, min(start + batch_size, len(embeds)))
        gens = [torch.Generator(device=device).manual_seed(seed if same_noise else seed + k) for k in chunk]
        images.extend(pipe(**embeds.batch_kwargs(chunk), generator=gens, **pipe_kwargs).images)
    return images


# ----------------------------------------------------------------------------- figure
