"""sdprobe.probes.textmask: several prompts through one CLIP pass under causal / hopping / hopping-code."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

import sdprobe
from sdprobe.probes.textmask import (
    MASK_KINDS,
    PromptLayout,
    PromptTooLongError,
    additive_mask,
    build_mask,
    encode_prompts,
    generate_per_prompt,
    prompt_layout,
)

from sdprobe.book.plots import mask_figure

from conftest import TINY_FAMILIES

# The stand-in tokenizers of the random families split words into characters, so prompts are short.
STORY = ["a red cat.", "it sits.", "it runs."]


def _embeds(pipe, prompts, mask):
    out = encode_prompts(pipe, prompts, mask=mask)
    return out.prompt_embeds, out.pooled


# ----------------------------------------------------------------------------- masks, by hand


# Layout (1, 1, 1) in 8 positions: 0 BOS, 1 a, 2 SEP, 3 b, 4 SEP, 5 c, 6 EOS, 7 pad.
HAND_MADE = {
    "causal": [[1 if j <= i else 0 for j in range(8)] for i in range(8)],
    "hopping": [
        [1, 0, 0, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0, 0, 0],
        [0, 0, 1, 0, 0, 0, 0, 0],  # SEP: itself only
        [1, 1, 0, 1, 0, 0, 0, 0],
        [0, 0, 0, 0, 1, 0, 0, 0],
        [1, 0, 0, 1, 0, 1, 0, 0],  # prompt 3: BOS, prompt 2, itself; not prompt 1
        [1, 0, 0, 1, 0, 1, 1, 0],
        [1, 0, 0, 1, 0, 1, 1, 1],
    ],
    "hopping-code": [
        [1, 0, 0, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 0, 0],  # SEP rows fully masked
        [1, 1, 1, 1, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 1, 1, 1, 0, 0],  # prompt 3 loses BOS
        [1, 1, 1, 1, 1, 1, 1, 0],
        [1, 1, 1, 1, 1, 1, 1, 1],
    ],
}


@pytest.mark.parametrize("kind", MASK_KINDS)
def test_masks_match_hand_written_matrices(kind):
    mask = build_mask(PromptLayout((1, 1, 1), max_length=8), kind)
    assert mask.dtype == torch.bool
    assert mask.int().tolist() == HAND_MADE[kind]


def _eq5_reference(lengths, size):
    """Eq. 5 cell by cell from a hand-built list of (role, prompt) per position."""
    pos = [("start", 0)]
    for k, n in enumerate(lengths, start=1):
        pos += [("word", k)] * n + [("sep", k) if k < len(lengths) else ("end", k)]
    pos += [("pad", len(lengths))] * (size - len(pos))
    ref = torch.zeros(size, size, dtype=torch.bool)
    for i, (ri, pi) in enumerate(pos):
        for j, (rj, pj) in enumerate(pos):
            if ri == "sep" or rj == "sep":
                ref[i, j] = i == j
            else:
                ref[i, j] = j <= i and (rj == "start" or pi - pj <= 1)
    return ref


@pytest.mark.parametrize("lengths", [(3,), (2, 3, 1), (4, 1, 2, 3), (1, 1, 1, 1, 1)])
def test_hopping_mask_matches_eq5_cell_by_cell(lengths):
    mask = build_mask(PromptLayout(lengths, max_length=24), "hopping")
    assert torch.equal(mask, _eq5_reference(lengths, 24))


def _code_reference(ids, end_id):
    """The authors' algorithm restated on SD 1.x token ids (end id = separator = padding)."""
    size = len(ids)
    ref = torch.zeros(size, size, dtype=torch.bool)
    seg_start, prev_start = 0, 0
    for i, t in enumerate(ids):
        if t == end_id:
            ref[seg_start:i, prev_start:i] = True
            prev_start, seg_start = seg_start, i + 1
    for i in range(1, size):
        if ids[i] == ids[i - 1] == end_id:
            ref[i - 1] = True
            ref[i] = True
    return ref & torch.ones(size, size, dtype=torch.bool).tril()


@pytest.mark.parametrize("lengths,size", [((2, 3, 1), 16), ((4, 1, 2, 3), 20), ((3, 4), 10), ((5,), 12)])
def test_hopping_code_mask_matches_the_authors_algorithm_on_token_ids(lengths, size):
    bos, end = 49406, 49407
    ids = [bos]
    for k, n in enumerate(lengths):
        ids += list(range(100 * (k + 1), 100 * (k + 1) + n)) + [end]
    ids += [end] * (size - len(ids))
    mask = build_mask(PromptLayout(lengths, max_length=size), "hopping-code")
    assert torch.equal(mask, _code_reference(ids, end))


def test_layout_positions():
    layout = PromptLayout((2, 3, 1), max_length=12)
    assert layout.spans == [slice(1, 3), slice(4, 7), slice(8, 9)]
    assert layout.separators == [3, 7]
    assert layout.end == 9 and layout.used == 10
    assert layout.roles()[:4] == ["start", "word", "word", "sep"] and layout.roles()[-2:] == ["pad", "pad"]
    assert layout.prompt_index()[:10] == [0, 1, 1, 1, 2, 2, 2, 2, 3, 3]


def test_additive_mask_is_zero_where_allowed_and_dtype_min_elsewhere():
    allowed = build_mask([2, 1], "hopping")
    add = additive_mask(allowed, torch.float16)
    assert add.shape == (1, 1, 77, 77) and add.dtype == torch.float16
    assert torch.equal(add[0, 0] == 0, allowed)
    assert torch.all(add[0, 0][~allowed] == torch.finfo(torch.float16).min)


# ----------------------------------------------------------------------------- encoding


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_causal_equals_the_pipelines_own_encoding(tiny_pipes, family):
    pipe = tiny_pipes(family)
    out = encode_prompts(pipe, STORY[:2], mask="causal")
    for k, prompt in enumerate(STORY[:2]):
        ref = pipe.encode_prompt(prompt, device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=True)
        assert torch.allclose(out.prompt_embeds[k : k + 1], ref[0], atol=1e-5)
        assert torch.allclose(out.negative_embeds, ref[1], atol=1e-5)
        if family == "sdxl-tiny":
            assert torch.allclose(out.pooled[k : k + 1], ref[2], atol=1e-5)
            assert torch.allclose(out.negative_pooled, ref[3], atol=1e-5)
    assert (out.pooled is None) == (family != "sdxl-tiny")


@pytest.mark.parametrize("family", TINY_FAMILIES)
@pytest.mark.parametrize("kind", ["hopping", "hopping-code"])
def test_first_prompt_equals_vanilla_and_the_second_does_not(tiny_pipes, family, kind):
    pipe = tiny_pipes(family)
    vanilla, _ = _embeds(pipe, STORY, "causal")
    hopped, _ = _embeds(pipe, STORY, kind)
    assert torch.allclose(hopped[0], vanilla[0], atol=1e-5)
    assert not torch.allclose(hopped[1], vanilla[1], atol=1e-3)


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_hopping_prompt_does_not_change_when_a_later_prompt_changes(tiny_pipes, family):
    pipe = tiny_pipes(family)
    base, base_pooled = _embeds(pipe, STORY, "hopping")
    later3, pooled3 = _embeds(pipe, STORY[:2] + ["a dog barks."], "hopping")
    later2, _ = _embeds(pipe, STORY[:1] + ["it flies away.", STORY[2]], "hopping")
    assert torch.allclose(later3[:2], base[:2], atol=1e-5)
    assert torch.allclose(later2[:1], base[:1], atol=1e-5)
    assert not torch.allclose(later3[2], base[2], atol=1e-3)  # the changed prompt itself does change
    if base_pooled is not None:
        assert torch.allclose(pooled3[:2], base_pooled[:2], atol=1e-5)


def test_hopping_code_leaks_a_later_prompt_into_an_earlier_one(tiny_pipes):
    # The code's fully masked separator rows attend uniformly to everything, future prompts included.
    pipe = tiny_pipes("sd1-tiny")
    base, _ = _embeds(pipe, STORY, "hopping-code")
    other, _ = _embeds(pipe, STORY[:2] + ["a dog barks."], "hopping-code")
    assert torch.allclose(other[0], base[0], atol=1e-5)
    assert not torch.allclose(other[1], base[1], atol=1e-4)


def test_hopping_information_hops_one_prompt_per_layer(tiny_pipes):
    # With L layers prompt k hears prompt k-L at most: prompt L+2 is blind to prompt 1.
    pipe = tiny_pipes("sd1-tiny")
    layers = pipe.text_encoder.config.num_hidden_layers
    story = [f"{c} x." for c in "abcdefgh"[: layers + 2]]
    base, _ = _embeds(pipe, story, "hopping")
    other, _ = _embeds(pipe, ["z x."] + story[1:], "hopping")  # same length: positions stay put
    assert not torch.allclose(other[layers], base[layers], atol=1e-4)  # prompt L+1 still hears it
    assert torch.allclose(other[layers + 1], base[layers + 1], atol=1e-5)
    causal_base, _ = _embeds(pipe, story, "causal")
    assert not torch.allclose(base[layers + 1], causal_base[layers + 1], atol=1e-3)


def test_joint_sequence_is_the_prompts_joined_by_the_end_token(tiny_pipes):
    pipe = tiny_pipes("sd1-tiny")  # pads with the end token, like SD 1.x
    out = encode_prompts(pipe, STORY, mask="hopping")
    joined = pipe.tokenizer("<|endoftext|>".join(STORY), padding="max_length", max_length=77).input_ids
    assert list(out.tokens) == pipe.tokenizer.convert_ids_to_tokens(joined)


def test_sd2_boundaries_come_from_tokenisation_not_pad_ids(tiny_pipes):
    pipe = tiny_pipes("sd2-tiny")  # pads with "!" (id 0)
    prompts = ["wow!!", "it runs!"]
    layout = prompt_layout(pipe, prompts)
    words = [len(pipe.tokenizer(p).input_ids) - 2 for p in prompts]
    assert layout.lengths == tuple(words)
    vanilla, _ = _embeds(pipe, prompts, "causal")
    hopped, _ = _embeds(pipe, prompts, "hopping")
    assert torch.allclose(hopped[0], vanilla[0], atol=1e-5)


def test_sdxl_joins_both_encoders_and_keeps_pooled_from_each_prompt_alone(tiny_pipes):
    pipe = tiny_pipes("sdxl-tiny")
    width = pipe.text_encoder.config.hidden_size + pipe.text_encoder_2.config.hidden_size
    causal = encode_prompts(pipe, STORY, mask="causal")
    hopped = encode_prompts(pipe, STORY, mask="hopping-code")
    assert hopped.prompt_embeds.shape == (3, 77, width)
    assert torch.allclose(hopped.pooled, causal.pooled, atol=1e-6)
    # The second prompt's words changed in both encoders' halves.
    half = pipe.text_encoder.config.hidden_size
    span = hopped.layout.spans[1]
    words = slice(1, 1 + span.stop - span.start)
    for part in (slice(0, half), slice(half, width)):
        assert not torch.allclose(hopped.prompt_embeds[1, words, part], causal.prompt_embeds[1, words, part], atol=1e-3)


def test_encoding_is_deterministic_and_leaves_the_pipeline_as_it_was(tiny_pipes):
    pipe = tiny_pipes("sd1-tiny")
    before = pipe.encode_prompt(STORY[1], "cpu", 1, False)[0]
    first, _ = _embeds(pipe, STORY, "hopping-code")
    second, _ = _embeds(pipe, STORY, "hopping-code")
    assert torch.equal(first, second)
    assert torch.equal(pipe.encode_prompt(STORY[1], "cpu", 1, False)[0], before)
    assert pipe.text_encoder.config._attn_implementation == "sdpa"


@pytest.mark.parametrize("kind", ["hopping", "hopping-code"])
def test_eager_and_sdpa_attention_give_the_same_masked_encoding(tiny_pipes, kind):
    sdpa, _ = _embeds(tiny_pipes("sd1-tiny"), STORY, kind)
    eager_pipe = sdprobe.load_pipeline("random:sd1-tiny", device="cpu")
    eager_pipe.text_encoder.set_attn_implementation("eager")
    eager, _ = _embeds(eager_pipe, STORY, kind)
    assert torch.allclose(eager, sdpa, atol=1e-5)


def test_toy_model_takes_hopping_embeddings():
    try:
        pipe = sdprobe.load_pipeline("toy", device="cpu")
    except sdprobe.ModelNotAvailableError:
        pytest.skip("the toy model is not trained yet (data/models/toy)")
    vanilla, _ = _embeds(pipe, STORY, "causal")
    hopped = encode_prompts(pipe, STORY, mask="hopping")
    assert torch.allclose(hopped.prompt_embeds[0], vanilla[0], atol=1e-5)
    images = generate_per_prompt(pipe, hopped, seed=0, num_inference_steps=2)
    assert len(images) == 3 and images[0].size == images[2].size


# ----------------------------------------------------------------------------- generation


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_every_mask_generates_images_through_the_stock_pipeline(tiny_pipes, family):
    pipe = tiny_pipes(family)
    for kind in MASK_KINDS:
        embeds = encode_prompts(pipe, STORY[:2], mask=kind)
        images = generate_per_prompt(pipe, embeds, seed=3, num_inference_steps=2, height=64, width=64)
        assert [im.size for im in images] == [(64, 64)] * 2


def test_same_noise_makes_equal_prompts_equal_images_and_the_control_does_not(tiny_pipes):
    pipe = tiny_pipes("sd1-tiny")
    embeds = encode_prompts(pipe, ["a cat.", "a cat."], mask="causal")
    run = dict(num_inference_steps=2, height=64, width=64, output_type="np")
    shared = generate_per_prompt(pipe, embeds, seed=5, **run)
    control = generate_per_prompt(pipe, embeds, seed=5, same_noise=False, **run)
    assert (shared[0] == shared[1]).all()
    assert not (control[0] == control[1]).all()
    assert (control[0] == shared[0]).all()


def test_batched_rendering_draws_the_images_of_one_call_per_prompt(tiny_pipes):
    pipe = tiny_pipes("sd1-tiny")
    embeds = encode_prompts(pipe, STORY, mask="hopping")
    run = dict(seed=2, same_noise=False, num_inference_steps=2, height=64, width=64, output_type="np")
    one_by_one = generate_per_prompt(pipe, embeds, batch_size=1, **run)
    batched = generate_per_prompt(pipe, embeds, batch_size=2, **run)
    assert len(batched) == len(STORY)
    for a, b in zip(one_by_one, batched):
        assert np.abs(a - b).max() < 1e-3
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        generate_per_prompt(pipe, embeds, batch_size=0, **run)


# ----------------------------------------------------------------------------- figure


def test_mask_figure_draws_one_panel_per_kind_over_the_used_positions():
    layout = PromptLayout((2, 3, 1))
    fig = mask_figure(layout, padding=2)
    assert isinstance(fig, Figure)
    axes = fig.get_axes()
    assert [ax.get_title() for ax in axes] == list(MASK_KINDS)
    ticks = [int(t) for t in axes[0].get_xticks()]
    names = layout.labels()
    # not every position is labelled (9-pt labels would overlap), but the ends and every separator are
    assert ticks[0] == 0 and ticks[-1] == layout.used + 1 and set(layout.separators) <= set(ticks)
    assert [t.get_text() for t in axes[0].get_yticklabels()] == [names[k] for k in ticks]
    assert all(t.get_fontsize() >= 9 for t in axes[0].get_xticklabels())
    shown = axes[2].get_images()[0].get_array()
    assert (shown[layout.separators[0]] == 1).all()  # the code's fully masked separator row


# ----------------------------------------------------------------------------- errors


def test_too_long_a_story_is_refused_with_the_count_and_the_limit(tiny_pipes):
    pipe = tiny_pipes("sd1-tiny")
    story = ["the quick brown fox jumps."] * 4
    count = sum(len(pipe.tokenizer(p).input_ids) - 1 for p in story) + 1  # words + separators + BOS/EOS
    assert count > 77
    with pytest.raises(PromptTooLongError, match=rf"{count} tokens.*at most 77"):
        encode_prompts(pipe, story, mask="hopping")
    with pytest.raises(PromptTooLongError, match="at most 77"):
        build_mask([40, 40], "causal")


@pytest.mark.parametrize("prompts,error,match", [
    ([], ValueError, "empty"),
    (["a cat.", ""], ValueError, "prompt 2 is empty"),
    (["a cat.", "   "], ValueError, "prompt 2 is empty"),
    ("a cat.", TypeError, "list of strings"),
    (["a cat.<|endoftext|>a dog."], ValueError, "as a list"),
])
def test_bad_prompts_are_refused_with_a_readable_error(tiny_pipes, prompts, error, match):
    with pytest.raises(error, match=match):
        encode_prompts(tiny_pipes("sd1-tiny"), prompts)


def test_unknown_mask_kind_lists_the_kinds(tiny_pipes):
    for call in (lambda: build_mask([2], "diagonal"),
                 lambda: encode_prompts(tiny_pipes("sd1-tiny"), STORY, mask="diagonal"),
                 lambda: mask_figure([2], kinds=["diagonal"])):
        with pytest.raises(ValueError, match="'causal', 'hopping', 'hopping-code'"):
            call()


def test_attention_that_ignores_custom_masks_is_refused():
    pipe = sdprobe.load_pipeline("random:sd1-tiny", device="cpu")
    pipe.text_encoder.config._attn_implementation = "flash_attention_2"  # as if loaded that way
    with pytest.raises(ValueError, match="cannot apply a custom mask"):
        encode_prompts(pipe, STORY, mask="hopping")


@pytest.mark.parametrize("prompts", [None, 3, "one string"])
def test_prompts_that_are_not_a_list_of_strings_are_one_line_errors(tiny_pipes, prompts):
    with pytest.raises(TypeError, match="prompts must be a list of strings"):
        encode_prompts(tiny_pipes("sd1-tiny"), prompts)


def test_a_negative_prompt_longer_than_the_context_is_refused_not_cut(tiny_pipes):
    pipe = tiny_pipes("sd1-tiny")
    with pytest.raises(PromptTooLongError, match=r"the negative prompt has \d+ tokens but the text encoder's context holds 75") as err:
        encode_prompts(pipe, ["a dog", "a cat"], negative_prompt=" ".join(["blurry"] * 200))
    assert "\n" not in str(err.value)
