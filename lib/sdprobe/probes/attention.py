"""Cross-attention capture and DAAM heat maps.

Example::

    with sdprobe.trace_attention(pipe) as trace:
        image = pipe("a dog runs across the field", num_inference_steps=50).images[0]
    trace.word_heatmap("dog")                    # DAAM's global word map  [h, w] float32 (latent size)
    trace.word_heatmap("dog", step=25)           # the map of one step
    trace.word_heatmap("dog", steps=range(20, 30))
    trace.token_heatmap(0)                       # any of the 77 positions, start and end included

**Capture.** :func:`trace_attention` installs a :class:`CrossAttentionRecorder` on every
cross-attention module (``attn2``) through diffusers' attention-processor API
(``Attention.set_processor``); self-attention keeps its fused kernel. Cross-attention has 77 keys,
so the recorder forms its probabilities ``softmax(q kᵀ · scale)`` once (scores in the
computation's dtype, the softmax in float32) and computes the module's output from them: the
capture costs the writing of the maps it keeps, not a second attention, and the image equals
plain generation's to float rounding (``output="fused"`` keeps diffusers' fused kernel for the
output, bit for bit, and forms the probabilities beside it). The images' conditional half of the
classifier-free-guidance batch is kept (the unconditional half on request), aggregated online on
the U-Net's device: per layer and head, summed over the steps at the layer's own resolution
(DAAM's accumulator); per step only when ``keep_steps`` (head-averaged unless ``keep_heads``).
Nothing goes to the host until a map is asked for. The step clock of
:class:`~sdprobe.probes.hooks.PipelineHooks` counts the steps and reports the text encoder's
runs, from which the trace takes the token ids of the embeddings the U-Net was given.

**DAAM's aggregation** (Tang et al., ACL 2023; castorini/daam 0.2.0, ``trace.py`` and
``heatmap.py``), which :meth:`AttentionTrace.word_heatmap` reproduces by default:

* layers: every cross-attention module of the down and up blocks; the mid block is left out
  (DAAM hooks it only to save heads, and its 1/8-scale maps are DAAM's skipped "factor 8");
* each (layer, head) map summed over all U-Net calls, then upsampled bicubically to the latent
  size and clamped at 0, then averaged with equal weight over all (layer, head) pairs;
* a word's map is the mean of its sub-token maps over every occurrence of the word (position + 1
  for the start token). No normalisation.

Differences from DAAM, all deliberate: maps are per image (DAAM folds ``num_images_per_prompt``
into its head axis and refuses prompt lists); non-square latents work; the default target size is
the generation's own latent size (DAAM upsamples to 64x64 when ``sample_size * 8`` is 512 or 1024,
else to 96x96, whatever the image size; pass ``size=`` to get its choice); a word matches whole
words only (DAAM also matches a word's tokens inside longer words).

**Steps** follow the library's convention (:mod:`sdprobe.probes.hooks`): U-Net calls, numbered from 0
within one pipeline call; for every scheduler the number of inference steps, except PNDM (SD
1.x's default), which calls the U-Net ``steps + 1`` times. ``trace.timesteps[i]`` gives the
timestep of step ``i``.

**One generation per block.** A trace holds one pipeline call; a second call inside the same
``with`` block raises :class:`~sdprobe.probes.hooks.SecondCallError`, unless ``several=True``, which
yields a list that gets one trace per call. Everything is attached through
:class:`~sdprobe.probes.hooks.PipelineHooks` and removed on exit. Word lookups are
:mod:`sdprobe.models.tokens`'; the aggregation itself is :func:`sdprobe.analysis.heatmaps.aggregate_maps`.

**Long prompts.** The pipelines truncate prompts at 77 tokens (start + 75 + end) and log a warning;
the trace sees the tokens the model saw, so words past the cut have no map and asking for one
raises :class:`WordNotInPromptError` saying the context was full. :func:`check_prompt_length`
raises :class:`PromptTooLongError` before generating.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F

from sdprobe.analysis.heatmaps import DEFAULT_THRESHOLD, aggregate_maps, heatmap_mask, resize_heatmap
from sdprobe.probes.hooks import PipelineHooks, unet_of
from sdprobe.models.latents import latent_scale_factor
from sdprobe.models.layers import layer_map, resolve_layers, text_layers
from sdprobe.models.tokens import PromptTooLongError, WordNotInPromptError, check_prompt_length, token_indices, words

__all__ = [
    "AttentionTrace",
    "AttentionListener",
    "CrossAttentionRecorder",
    "CrossAttentionSite",
    "PromptTooLongError",
    "WordNotInPromptError",
    "check_prompt_length",
    "attention_probabilities",
    "cross_attention_sites",
    "trace_attention",
]

#: What a heat map is resized to: ``(h, w)``, the latent grid, the image, or None (its own grid).
MapSize = tuple[int, int] | Literal["latent", "image"] | None


# ----------------------------------------------------------------------------- where to record


@dataclass(frozen=True)
class CrossAttentionSite:
    """One cross-attention module of the U-Net.

    Attributes:
        path: the module path, e.g. ``"up_blocks.1.attentions.0.transformer_blocks.0.attn2"``.
        layer: the LDM name of its block (``"IN1"``…``"MID"``…``"OUT11"``, see :mod:`sdprobe.models.layers`).
        block: index of its transformer block inside the layer (SDXL stacks up to 10).
        heads: number of attention heads.
        scale: latent side / map side (1, 2, 4, 8).
    """

    path: str
    layer: str
    block: int
    heads: int
    scale: int


def cross_attention_sites(unet: torch.nn.Module, layers: str | Iterable[str] | None = None) -> list[CrossAttentionSite]:
    """The cross-attention modules of ``unet`` in forward order, optionally only those of ``layers``.

    Raises:
        UnknownLayerError: a name that is not a text-conditioned layer of this U-Net.
    """
    table = layer_map(unet)
    names = text_layers(unet)
    if layers is not None:  # validate, then keep forward order
        wanted = {lay.name for lay in resolve_layers(unet, layers, text_only=True)}
        names = [name for name in names if name in wanted]
    sites = []
    for name in names:
        layer = table[name]
        transformer = unet.get_submodule(layer.text_module)
        for k, block in enumerate(transformer.transformer_blocks):
            attn = getattr(block, "attn2", None)
            if attn is None or not getattr(attn, "is_cross_attention", True):
                continue
            path = f"{layer.text_module}.transformer_blocks.{k}.attn2"
            sites.append(CrossAttentionSite(path, name, k, attn.heads, layer.scale))
    return sites


# ----------------------------------------------------------------------------- the processor


#: What a :class:`CrossAttentionRecorder` hands on at every call of its module:
#: ``listener(site, probs)``, the attention probabilities ``[B, heads, L, T]`` in float32.
AttentionListener = Callable[["CrossAttentionSite", torch.Tensor], None]


def attention_probabilities(query: torch.Tensor, key: torch.Tensor, mask: torch.Tensor | None,
                            scale: float) -> torch.Tensor:
    """``softmax(q kᵀ · scale + mask)``, float32 ``[B, heads, L, T]``: the scores in the
    computation's dtype (``query`` ``[B, heads, L, d]``, ``key`` ``[B, heads, T, d]``), the softmax
    accumulated in float32."""
    scores = torch.matmul(query, key.transpose(-1, -2)).mul_(scale)
    if mask is not None:
        scores = scores + mask
    return scores.softmax(dim=-1, dtype=torch.float32)


def _check_output(output: Any) -> None:
    if output not in ("probabilities", "fused"):
        raise ValueError(f"output must be 'probabilities' or 'fused', not {output!r}")


class CrossAttentionRecorder:
    """Attention processor for one ``attn2`` module: the attention probabilities, formed once and
    handed to a listener, and the module's output.

    ``output="probabilities"`` (the trace's): the output is computed from those probabilities,
    ``probs @ v``, so capturing costs no second attention; it equals diffusers' fused
    ``AttnProcessor2_0`` to float rounding. With 77 keys the probabilities are small to form even
    where the fused kernel would not form them. ``output="fused"``: the output is
    ``AttnProcessor2_0``'s own (scaled dot-product attention, bit for bit) and the probabilities
    are formed beside it (the toy's grounding loss keeps them with their gradients). A recorder
    installed over another (``outer``, a nested trace) hands on to both listeners.
    """

    def __init__(self, listener: AttentionListener, site: CrossAttentionSite,
                 outer: CrossAttentionRecorder | None = None, *,
                 output: Literal["probabilities", "fused"] = "probabilities"):
        _check_output(output)
        self.site, self.output = site, output
        self.listeners: list[AttentionListener] = [listener, *(outer.listeners if outer is not None else [])]

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args,
        **kwargs,
    ) -> torch.Tensor:
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch_size, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)
        batch_size, sequence_length, _ = (
            hidden_states.shape if encoder_hidden_states is None else encoder_hidden_states.shape
        )
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
            attention_mask = attention_mask.view(batch_size, attn.heads, -1, attention_mask.shape[-1])
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)

        head_dim = key.shape[-1] // attn.heads
        query = query.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)  # [B, heads, L, d]
        key = key.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)  # [B, heads, T, d]
        value = value.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)

        probs = attention_probabilities(query, key, attention_mask, attn.scale)
        for listener in self.listeners:
            listener(self.site, probs)
        if self.output == "fused":
            hidden_states = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, dropout_p=0.0,
                                                           is_causal=False)
        else:
            hidden_states = torch.matmul(probs.to(value.dtype), value)  # [B, heads, L, d]
        hidden_states = hidden_states.transpose(1, 2).reshape(batch_size, -1, attn.heads * head_dim).to(query.dtype)
        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


# ----------------------------------------------------------------------------- the trace

_HALVES = ("cond", "uncond")


class AttentionTrace:
    """The cross-attention of one pipeline call made inside :func:`trace_attention`.

    Maps are returned on the CPU in float32. ``image`` picks one image of the batch (prompt ``p``,
    copy ``j`` of ``num_images_per_prompt = m`` is image ``p * m + j``, the pipelines' order).

    Attributes:
        sites: the recorded cross-attention modules.
        timesteps: the timestep of each step (U-Net call).
        latent_size: ``(h, w)`` of the latents; image size is ``8h x 8w``.
    """

    def __init__(self, pipe: Any, sites: list[CrossAttentionSite], *, keep_steps: bool, keep_heads: bool, uncond: bool):
        self.pipe = pipe
        self.sites = sites
        self.keep_steps = keep_steps
        self.keep_heads = keep_heads
        self.uncond = uncond
        encoder_name = "text_encoder" if getattr(pipe, "text_encoder", None) is not None else "text_encoder_2"
        self._tokenizer = getattr(pipe, encoder_name.replace("text_encoder", "tokenizer"))
        self._sums: dict[str, dict[str, torch.Tensor]] = {h: {} for h in _HALVES}  # path -> [n, heads, L, T]
        self._steps: dict[str, list[dict[str, torch.Tensor]]] = {h: [] for h in _HALVES}  # [step][path] -> [n, (heads,) L, T]
        self._token_ids: dict[str, torch.Tensor | None] = {h: None for h in _HALVES}  # [prompts, T], set by the router
        self.timesteps: list[float] = []
        self.latent_size: tuple[int, int] | None = None
        self._images = 0
        self._cfg = False
        self._dtype = getattr(pipe.unet, "dtype", torch.float32)  # per-step maps are kept in the U-Net's dtype

    # -- recording (called by the trace's recorder) --------------------------------------------

    def _start_step(self, sample: torch.Tensor, t: float, cfg: bool) -> None:
        batch = sample.shape[0]
        if cfg and batch % 2:
            raise RuntimeError(f"classifier-free guidance is on but the U-Net batch ({batch}) is odd")
        self._images, self.latent_size, self._cfg = (batch // 2 if cfg else batch), tuple(sample.shape[-2:]), cfg
        self.timesteps.append(t)
        if self.keep_steps:
            for half in _HALVES:
                self._steps[half].append({})

    @torch.no_grad()
    def _record(self, site: CrossAttentionSite, probs: torch.Tensor) -> None:
        """Add one call's probabilities ``[B, heads, L, T]`` (float32), on their device: no copy to
        the host and no synchronisation until a map is asked for."""
        n, batch = self._images, probs.shape[0]
        if batch != (2 * n if self._cfg else n):
            raise RuntimeError(f"{site.path}: attention batch {batch} does not match the U-Net batch of {n} images")
        halves = [("cond", slice(batch - n, batch))]
        if self.uncond and self._cfg:
            halves.append(("uncond", slice(0, n)))
        for half, rows in halves:
            part = probs[rows]  # [n, heads, L, T]
            total = self._sums[half].get(site.path)
            if total is None:
                self._sums[half][site.path] = total = torch.zeros_like(part)
            total.add_(part)
            if self.keep_steps:
                kept = part if self.keep_heads else part.mean(dim=1)
                self._steps[half][-1][site.path] = kept.to(self._dtype)

    # -- what was recorded ---------------------------------------------------------------------

    @property
    def num_steps(self) -> int:
        """Number of U-Net calls of the traced generation."""
        return len(self.timesteps)

    @property
    def num_images(self) -> int:
        """Number of images the traced generation made (prompts x ``num_images_per_prompt``)."""
        return self._images

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)`` of the generated images in pixels."""
        h, w = self._latent_size()
        factor = latent_scale_factor(self.pipe)
        return h * factor, w * factor

    def memory_bytes(self) -> dict[str, int]:
        """Bytes held by the step sums (``"sums"``) and the per-step maps (``"steps"``)."""
        sums = sum(t.numel() * t.element_size() for half in self._sums.values() for t in half.values())
        steps = sum(t.numel() * t.element_size() for half in self._steps.values() for step in half for t in step.values())
        return {"sums": sums, "steps": steps}

    def tokens(self, *, image: int = 0, uncond: bool = False) -> list[str]:
        """The tokens the text encoder saw for ``image``: all context positions (77), start first."""
        ids = self._ids(image, uncond)
        return self._tokenizer.convert_ids_to_tokens(ids.tolist())

    def words(self, *, image: int = 0, uncond: bool = False) -> list[str]:
        """The prompt's words as the tokenizer split them (punctuation is a word of its own)."""
        return words(self.tokens(image=image, uncond=uncond), self._tokenizer.eos_token)

    def token_indices(self, word: str, *, image: int = 0, uncond: bool = False) -> list[int]:
        """Context positions of every sub-token of every occurrence of ``word`` (whole words only).

        Raises:
            WordNotInPromptError: the word is not in the prompt; the message lists its words.
        """
        which = f"{'negative prompt' if uncond else 'prompt'} of image {image}"
        return token_indices(self.tokens(image=image, uncond=uncond), word, self._tokenizer, what=which)

    # -- heat maps ------------------------------------------------------------------------------

    def word_heatmap(self, word: str, *, image: int = 0, step: int | None = None, steps: Iterable[int] | None = None,
                     layers: str | Iterable[str] | None = None, scales: Iterable[int] | None = None,
                     size: MapSize = None, uncond: bool = False) -> torch.Tensor:
        """DAAM's heat map of ``word``: the mean of its sub-token maps. ``[h, w]`` float32.

        Args:
            word: a word (or several, ``"red car"``) of the prompt; case does not matter.
            image: which image of the batch.
            step: one step only (a U-Net call index, negative counts from the end); needs
                ``keep_steps``.
            steps: the sum over these steps (``range(20, 30)``); needs ``keep_steps``. Without
                ``step``/``steps``: all steps, as DAAM.
            layers: ``None`` for DAAM's selection (all but ``MID``), ``"all"``, or LDM names
                (``"IN4"``, ``["OUT3", "OUT4"]``).
            scales: keep only layers whose maps are the latent size divided by these (1, 2, 4, 8).
            size: ``None``/``"latent"`` for the latent size, ``"image"`` for the image size (the
                latent-size map resized bicubically, clamped at 0), or ``(h, w)`` to upsample each
                layer's maps straight to that size (DAAM's 64x64 or 96x96, say).
            uncond: the map of the negative prompt (needs ``uncond=True`` when tracing).
        """
        index = self.token_indices(word, image=image, uncond=uncond)
        return self.token_heatmap(index, image=image, step=step, steps=steps, layers=layers, scales=scales, size=size, uncond=uncond)

    def token_heatmap(self, index: int | Sequence[int], *, image: int = 0, step: int | None = None,
                      steps: Iterable[int] | None = None, layers: str | Iterable[str] | None = None,
                      scales: Iterable[int] | None = None, size: MapSize = None, uncond: bool = False) -> torch.Tensor:
        """The heat map of context position(s) ``index`` (0 is the start token), averaged if several.
        ``[h, w]`` float32; the options are those of :meth:`word_heatmap`."""
        indices = [index] if isinstance(index, int) else list(index)
        return self.token_heatmaps(indices, image=image, step=step, steps=steps, layers=layers,
                                   scales=scales, size=size, uncond=uncond).mean(dim=0)

    def token_heatmaps(self, indices: Sequence[int] | None = None, *, image: int = 0, step: int | None = None,
                       steps: Iterable[int] | None = None, layers: str | Iterable[str] | None = None,
                       scales: Iterable[int] | None = None, size: MapSize = None, uncond: bool = False) -> torch.Tensor:
        """Heat maps of several positions at once (all 77 by default): ``[k, h, w]`` float32."""
        half = "uncond" if uncond else "cond"
        source = self._source(half, step, steps)
        if not source:
            raise RuntimeError("this trace holds no attention maps: no traced cross-attention layer ran")
        context = next(iter(source.values())).shape[-1]
        indices = list(range(context)) if indices is None else [self._check_index(i, context) for i in indices]
        self._check_image(image)
        final = self._target_size(size)
        target = self._latent_size() if final == "image" else final
        sites = [(site.path, site.heads) for site in self._select(layers, scales, source)]
        maps = aggregate_maps(source, sites, indices, image, target, self._latent_size())
        if final == "image":
            maps = resize_heatmap(maps, self.image_size)
        return maps.cpu()

    def word_mask(self, word: str, threshold: float = DEFAULT_THRESHOLD, *, size: MapSize = "image", **options: Any) -> torch.Tensor:
        """Where ``word``'s min-max normalised heat map exceeds ``threshold`` (DAAM's 0.4):
        a bool ``[H, W]`` mask, at the image size by default. ``options`` as in :meth:`word_heatmap`."""
        return heatmap_mask(self.word_heatmap(word, size=size, **options), threshold)

    # -- internals -----------------------------------------------------------------------------

    def _latent_size(self) -> tuple[int, int]:
        if self.latent_size is None:
            raise RuntimeError("nothing was recorded: call the pipeline inside `with trace_attention(pipe) as trace:`")
        return self.latent_size

    def _check_image(self, image: int) -> None:
        if not 0 <= image < self._images:
            raise IndexError(f"image={image} is out of range: the traced call made {self._images} image(s)")

    @staticmethod
    def _check_index(index: int, context: int) -> int:
        if not -context <= index < context:
            raise IndexError(f"token index {index} is out of range: the context has {context} positions (0 is the start token)")
        return index % context

    def _ids(self, image: int, uncond: bool) -> torch.Tensor:
        self._latent_size()
        self._check_image(image)
        if uncond:
            self._check_uncond()
        ids = self._token_ids["uncond" if uncond else "cond"]
        if ids is None:
            which = "negative prompt" if uncond else "prompt"
            raise RuntimeError(f"the text encoder was not run for the {which} (embeddings passed in, or zeroed "
                               "negative embeddings), so its tokens are unknown; use token_heatmap(index)")
        if self._images % ids.shape[0]:
            raise RuntimeError(f"{self._images} images do not split evenly over {ids.shape[0]} prompts")
        return ids[image // (self._images // ids.shape[0])]

    def _source(self, half: str, step: int | None, steps: Iterable[int] | None) -> dict[str, torch.Tensor]:
        """Per site, the maps to aggregate: ``[n, heads, L, T]``, or ``[n, L, T]`` (head mean)."""
        self._latent_size()
        if half == "uncond":
            self._check_uncond()
        if step is None and steps is None:
            return self._sums[half]
        if step is not None and steps is not None:
            raise ValueError("give either step= or steps=, not both")
        if step is not None:
            _check_step_index(step, "step")
        elif isinstance(steps, (str, bytes)) or not isinstance(steps, Iterable):
            raise ValueError(f"steps must be several U-Net call indices (range(20, 30), [3, 4]), not {steps!r}")
        else:
            steps = [_check_step_index(s, "an item of steps") for s in steps]
        if not self.keep_steps:
            raise RuntimeError("per-step maps were not kept: trace with trace_attention(pipe, keep_steps=True)")
        chosen = [step] if step is not None else list(steps)
        if not chosen:
            raise ValueError("steps= is empty")
        count = len(self._steps[half])
        for s in chosen:
            if not -count <= s < count:
                raise IndexError(f"step {s} is out of range: the traced call had {count} U-Net calls (steps 0..{count - 1})")
        picked = [self._steps[half][s] for s in chosen]
        return {path: sum(p[path].float() for p in picked) for path in picked[0]}

    def _check_uncond(self) -> None:
        if not self.uncond:
            raise RuntimeError("this trace kept no unconditional half: trace with trace_attention(pipe, uncond=True) "
                               "to read the negative prompt's maps")
        if not self._cfg:
            raise RuntimeError("the traced call made no unconditional half (guidance_scale ≤ 1 turns guidance off)")

    def _select(self, layers: str | Iterable[str] | None, scales: Iterable[int] | None,
                source: dict[str, torch.Tensor]) -> list[CrossAttentionSite]:
        recorded = [s for s in self.sites if s.path in source]
        if layers is None:
            chosen = [s for s in recorded if s.layer != "MID"]
        elif isinstance(layers, str) and layers == "all":
            chosen = recorded
        else:
            names = {lay.name for lay in resolve_layers(self.pipe.unet, layers, text_only=True)}
            have = list(dict.fromkeys(s.layer for s in recorded))
            missing = names - set(have)
            if missing:
                raise ValueError(f"layer(s) {sorted(missing)} were not traced; traced: {', '.join(have)}")
            chosen = [s for s in recorded if s.layer in names]
        if scales is not None:
            wanted = set(scales)
            available = sorted({s.scale for s in chosen})
            chosen = [s for s in chosen if s.scale in wanted]
            if not chosen:
                raise ValueError(f"no selected layer has scale in {sorted(wanted)}; available scales: {available}")
        if not chosen:
            raise ValueError("no cross-attention layer selected (the default leaves out MID; pass layers='all')")
        return chosen

    def _target_size(self, size: MapSize) -> tuple[int, int] | Literal["image"]:
        if size is None or size == "latent":
            return self._latent_size()
        if size == "image":
            return "image"
        if isinstance(size, tuple | list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size):
            return int(size[0]), int(size[1])
        raise ValueError(f"size must be None, 'latent', 'image' or a pair of positive ints (h, w), not {size!r}")


def _check_step_index(step: Any, what: str) -> int:
    """A U-Net call index: an integer, not a bool, a float or a string."""
    if isinstance(step, bool) or not isinstance(step, numbers.Integral):
        raise ValueError(f"{what} is a U-Net call index (a whole number, negative from the end), not {step!r}")
    return int(step)


# ----------------------------------------------------------------------------- entry points


class _Encoding:
    """One run of the text encoder: the token ids it read, ``[P, T]``, and the outputs a pipeline
    may take as its prompt embeddings (the last and the penultimate hidden states), ``[P, T, d]``."""

    def __init__(self, ids: torch.Tensor) -> None:
        self.ids = ids.detach().cpu()
        self.outputs: list[torch.Tensor] = []

    def feeds(self, rows: torch.Tensor) -> bool:
        """Whether ``rows`` ``[n, T, D]`` (one half of the U-Net's context) are these embeddings,
        each prompt repeated ``n / P`` times and perhaps joined with another encoder's (SDXL)."""
        prompts = self.ids.shape[0]
        if rows.shape[0] % prompts:
            return False
        firsts = rows[:: rows.shape[0] // prompts]
        return any(out.shape[:2] == firsts.shape[:2] and out.shape[-1] <= firsts.shape[-1]
                   and torch.equal(firsts[..., : out.shape[-1]], out.to(firsts)) for out in self.outputs)


class _TraceRouter:
    """Routes what the clock and the processors see to the trace of the pipeline call now running.

    A trace reads its words from the prompt whose embeddings the U-Net was given: each half of
    the U-Net's context is matched against the text-encoder runs of the call (the last step's
    match counts), whatever order they ran in. Where nothing matches (``clip_skip`` embeddings,
    or embeddings changed after encoding), the call's first encoding is the prompt and the
    second the negative prompt, diffusers' order.
    """

    def __init__(self, pipe: Any, sites: list[CrossAttentionSite], options: dict[str, Any], several: bool,
                 encoder: torch.nn.Module | None) -> None:
        self.pipe, self.sites, self.options, self.encoder = pipe, sites, options, encoder
        self.traces: list[AttentionTrace] = []
        self._encodings: list[_Encoding] = []  # of the call about to start, or running
        self._context: torch.Tensor | None = None  # the U-Net context last matched
        # One call: the trace exists from the start (the block yields it) and the call fills it.
        self.single = None if several else AttentionTrace(pipe, sites, **options)

    def new_call(self, number: int) -> None:
        trace = self.single or AttentionTrace(self.pipe, self.sites, **self.options)
        order = [e.ids for e in self._encodings[:2]]
        trace._token_ids = {half: order[k] if k < len(order) else None for k, half in enumerate(_HALVES)}
        self.traces.append(trace)
        self._context = None

    def encoded(self, module: torch.nn.Module, args: tuple, kwargs: dict, first: bool) -> None:
        ids = args[0] if args else kwargs.get("input_ids")
        if module is not self.encoder or ids is None:
            return
        if first:  # the first encoding since the U-Net ran: the next call's prompts
            self._encodings = []
        self._encodings.append(_Encoding(ids))

    def after_encoder(self, module: torch.nn.Module, args: tuple, output: Any) -> None:
        if not self._encodings or not torch.is_tensor(getattr(output, "last_hidden_state", None)):
            return
        hidden = getattr(output, "hidden_states", None)
        self._encodings[-1].outputs = [output.last_hidden_state.detach()] + ([hidden[-2].detach()] if hidden else [])

    def step(self, step: int, t: float, args: tuple, kwargs: dict) -> None:
        sample = args[0] if args else kwargs["sample"]
        cfg = bool(getattr(self.pipe, "do_classifier_free_guidance", False))
        trace = self.traces[-1]
        trace._start_step(sample, t, cfg)
        context = kwargs.get("encoder_hidden_states", args[2] if len(args) > 2 else None)
        if torch.is_tensor(context) and context is not self._context:  # once per context: no sync per step
            self._context = context
            n = trace._images
            halves = {"cond": context[-n:], "uncond": context[:n]} if cfg else {"cond": context}
            for half, rows in halves.items():
                match = next((e for e in reversed(self._encodings) if e.feeds(rows)), None)
                if match is not None:
                    trace._token_ids[half] = match.ids

    def record(self, site: CrossAttentionSite, probs: torch.Tensor) -> None:
        if self.traces and self.traces[-1].timesteps:  # not a U-Net forward outside a generation
            self.traces[-1]._record(site, probs)


@contextmanager
def trace_attention(
    pipe: Any,
    *,
    keep_steps: bool = True,
    keep_heads: bool = False,
    uncond: bool = False,
    layers: str | Iterable[str] | None = None,
    several: bool = False,
    output: Literal["probabilities", "fused"] = "probabilities",
) -> Iterator[AttentionTrace | list[AttentionTrace]]:
    """Record the cross-attention of the pipeline call made inside the block.

    Args:
        pipe: a Stable Diffusion (1.x, 2.x) or SDXL pipeline, or the toy model.
        keep_steps: also keep each step's maps (head-averaged), for ``step=``/``steps=``.
        keep_heads: keep the per-step maps per head (DAAM's exact aggregation for step ranges;
            ``heads`` times the memory).
        uncond: also record the unconditional (negative-prompt) half of the CFG batch.
        layers: LDM names of the layers to record (``"IN4"``, ``["OUT3", "OUT4"]``); ``None``
            records every cross-attention layer.
        several: allow several pipeline calls; the block then yields a list, one trace per call.
        output: ``"probabilities"``: each cross-attention output is computed from the probabilities
            the trace keeps (one attention, not two; equal to plain generation to float
            rounding); ``"fused"``: diffusers' fused attention gives the output, bit for bit as
            without the trace, and the probabilities are formed beside it (slower).

    Raises:
        UnknownLayerError: a name in ``layers`` that is not a text-conditioned layer; the message
            lists the valid ones.
        SecondCallError: a second pipeline call inside the block without ``several=True``.
    """
    _check_output(output)
    unet = unet_of(pipe, "trace_attention")
    sites = cross_attention_sites(unet, layers)
    encoder = pipe.text_encoder if getattr(pipe, "text_encoder", None) is not None else getattr(pipe, "text_encoder_2", None)
    router = _TraceRouter(pipe, sites, {"keep_steps": keep_steps, "keep_heads": keep_heads, "uncond": uncond},
                          several, encoder)
    with PipelineHooks(pipe, "trace_attention", several=several) as hooks:
        hooks.clock.subscribe(call=router.new_call, step=router.step, encode=router.encoded)
        if encoder is not None:
            hooks.forward_hook(encoder, router.after_encoder)
        for site in sites:
            module = unet.get_submodule(site.path)
            outer = module.processor if isinstance(module.processor, CrossAttentionRecorder) else None
            hooks.processor(module, CrossAttentionRecorder(router.record, site, outer, output=output))
        yield router.traces if several else router.single
