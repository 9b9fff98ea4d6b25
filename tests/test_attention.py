"""sdprobe.probes.attention: cross-attention capture and DAAM heat maps, on the tiny random families."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import Attention
from matplotlib.figure import Figure

import sdprobe
from sdprobe.probes.attention import (
    AttentionTrace,
    CrossAttentionRecorder,
    PromptTooLongError,
    WordNotInPromptError,
    check_prompt_length,
    cross_attention_sites,
    trace_attention,
)
from sdprobe.probes.hooks import SecondCallError
from sdprobe.analysis.heatmaps import heatmap_mask, normalize_heatmap, resize_heatmap
from sdprobe.analysis.metrics import mask_iou, pearson_r
from sdprobe.book.plots import overlay_figure
from sdprobe.models.layers import UnknownLayerError
from sdprobe.paths import CONFIGS_DIR

PROMPT = "a dog runs across the field"
WORDS = ["dog", "runs", "across", "field"]  # unambiguous for DAAM's sub-token search too
FAMILIES = ["sd1-tiny", "sd2-tiny", "sdxl-tiny"]


def model_params():
    return [f"random:{f}" for f in FAMILIES] + ["toy"]


def generate(pipe, prompt=PROMPT, steps=3, seed=0, **kwargs):
    return pipe(prompt, num_inference_steps=steps, generator=torch.Generator().manual_seed(seed), output_type="pt", **kwargs).images


def processors(pipe) -> dict[str, object]:
    return {name: m.processor for name, m in pipe.unet.named_modules() if isinstance(m, Attention)}


# ----------------------------------------------------------------------------- capture


@pytest.mark.parametrize("model", model_params())
def test_traced_generation_equals_plain_to_float_rounding_and_bit_for_bit_with_the_fused_output(pipes, model):
    pipe = pipes(model)
    plain = generate(pipe)
    with trace_attention(pipe) as trace:
        traced = generate(pipe)
    with trace_attention(pipe, output="fused") as exact:
        fused = generate(pipe)
    assert trace.num_steps == exact.num_steps > 0
    assert torch.equal(fused, plain)
    assert (traced - plain).abs().max() <= 1e-4  # a fortieth of one 8-bit level
    assert torch.allclose(trace.word_heatmap("dog"), exact.word_heatmap("dog"), rtol=1e-3, atol=1e-6)


def test_an_unknown_output_mode_is_refused_in_one_line(pipes):
    with pytest.raises(ValueError, match="output must be 'probabilities' or 'fused', not 'exact'"):
        with trace_attention(pipes("random:sd1-tiny"), output="exact"):
            pass


@pytest.mark.parametrize("model", ["random:sd1-tiny", "random:sdxl-tiny", "toy"])
def test_a_trace_reads_the_words_of_the_embeddings_the_unet_was_given_whatever_order_they_were_encoded(pipes, model):
    from sdprobe.probes.transplant.seedlings import _encode

    pipe = pipes(model)
    with trace_attention(pipe, uncond=True) as trace:
        _encode(pipe, ["a red square"], "a blue circle", 5.0)  # encoded first, never drawn
        given = _encode(pipe, [PROMPT], "a white star", 5.0)
        pipe(**given, num_inference_steps=2, guidance_scale=5.0, generator=torch.Generator().manual_seed(0))
    assert trace.words()[:2] == ["a", "dog"]
    assert trace.words(uncond=True) == ["a", "white", "star"]


def test_only_cross_attention_gets_the_recorder_and_all_is_restored(pipes):
    pipe = pipes("random:sd1-tiny")
    before = processors(pipe)
    with trace_attention(pipe):
        during = processors(pipe)
    after = processors(pipe)
    replaced = {n for n in before if during[n] is not before[n]}
    assert replaced == {n for n in before if n.endswith("attn2")}
    assert all(isinstance(during[n], CrossAttentionRecorder) for n in replaced)
    assert all(after[n] is before[n] for n in before)


def test_processors_and_hooks_are_restored_after_an_exception(pipes):
    pipe = pipes("random:sd2-tiny")
    before = processors(pipe)
    with pytest.raises(RuntimeError, match="boom"):
        with trace_attention(pipe) as trace:
            generate(pipe, steps=2)
            raise RuntimeError("boom")
    assert all(processors(pipe)[n] is p for n, p in before.items())
    recorded = trace.num_steps
    generate(pipe, steps=2)  # hooks gone: nothing more is counted
    assert trace.num_steps == recorded


# The notes' counts (shared/notes/daam.md): SD 1.x 16 attn2 modules of 8 heads; SD 2.1 16, with
# 5/10/20 heads, so DAAM averages 175 (layer, head) maps; SDXL 70 (10 of them in the mid block),
# 10 modules of 10 heads at 64x64 and 50 of 20 heads at 32x32 outside the mid block.
@pytest.mark.parametrize("family, modules, daam_weights", [("sd1", 16, 15 * 8), ("sd2", 16, 175), ("sdxl", 70, 10 * 10 + 50 * 20)])
def test_full_size_models_have_the_cross_attention_modules_daam_uses(family, modules, daam_weights):
    config = json.loads((CONFIGS_DIR / family / "unet.json").read_text())
    with torch.device("meta"):  # shapes only, no memory
        unet = UNet2DConditionModel.from_config(config)
    sites = cross_attention_sites(unet)
    assert len(sites) == modules and all(s.path.endswith("attn2") for s in sites)
    assert sum(s.heads for s in sites if s.layer != "MID") == daam_weights


@pytest.mark.parametrize("scheduler, calls", [("pndm", 5), ("ddim", 4), ("euler", 4)])
def test_steps_are_unet_calls_numbered_from_zero(pipes, scheduler, calls):
    pipe = sdprobe.load_pipeline("random:sd1-tiny", scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    with trace_attention(pipe) as trace:
        generate(pipe, steps=4)
    assert trace.num_steps == calls
    assert trace.timesteps == [float(t) for t in pipe.scheduler.timesteps]
    assert trace.word_heatmap("dog", step=calls - 1).shape == (16, 16)
    with pytest.raises(IndexError, match=f"0..{calls - 1}"):
        trace.word_heatmap("dog", step=calls)


def test_a_second_pipeline_call_is_refused_unless_several_are_asked_for(pipes):
    pipe = pipes("random:sd1-tiny")
    with trace_attention(pipe) as alone:
        generate(pipe, "a red fox", seed=1)
    with pytest.raises(SecondCallError, match="records one pipeline call"):
        with trace_attention(pipe):
            generate(pipe, seed=0)
            generate(pipe, "a red fox", seed=1)
    with trace_attention(pipe, several=True) as traces:
        generate(pipe, seed=0)
        generate(pipe, "a red fox", seed=1)
    assert len(traces) == 2 and traces[1].words() == ["a", "red", "fox"]
    assert torch.equal(traces[1].word_heatmap("fox"), alone.word_heatmap("fox"))
    assert torch.equal(traces[1].word_heatmap("fox", step=2), alone.word_heatmap("fox", step=2))
    assert traces[0].words() != traces[1].words()


def test_same_parameters_give_the_same_maps(pipes):
    pipe = pipes("random:sdxl-tiny")
    maps = []
    for _ in range(2):
        with trace_attention(pipe) as trace:
            generate(pipe, steps=2)
        maps.append(trace.token_heatmaps())
    assert torch.equal(maps[0], maps[1])


# ----------------------------------------------------------------------------- DAAM agreement


@pytest.mark.filterwarnings("ignore:.*torch.cuda.amp.autocast:FutureWarning")
@pytest.mark.parametrize("model", model_params())
def test_word_maps_agree_with_daam_on_the_same_pipeline(pipes, model):
    import daam  # the reference; `make test` installs daam 0.2.0 (a missing daam fails here, never skips)

    pipe = pipes(model)
    with daam.trace(pipe) as tc:
        generate(pipe, steps=4)
        # DAAM files maps under "factors" relative to 64 or 96 latent cells; the tiny models' are
        # not powers of two, so ask for every factor it recorded (it skipped factor 8 itself).
        reference = tc.compute_global_heat_map(factors=tc.all_heat_maps.factors())
    side = int(tc.latent_hw**0.5)  # DAAM's target size: 64 or 96, from the config
    with trace_attention(pipe) as trace:
        generate(pipe, steps=4)
    words = WORDS if model != "toy" else [w for w in trace.words() if w in WORDS] or trace.words()[1:3]
    for word in words:
        ours = trace.word_heatmap(word, size=(side, side))
        theirs = reference.compute_word_heat_map(word).value.float()
        assert pearson_r(ours, theirs) >= 0.99, word  # the criterion
        assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-7), word  # fp32 on the CPU: rounding only


# ----------------------------------------------------------------------------- maps


def test_word_map_is_a_float32_latent_size_map_of_its_sub_tokens(pipes):
    pipe = pipes("random:sd1-tiny")
    with trace_attention(pipe) as trace:
        generate(pipe)
    heat = trace.word_heatmap("Dog")
    assert heat.dtype == torch.float32 and heat.shape == trace.latent_size == (16, 16)
    index = trace.token_indices("dog")
    assert [trace.tokens()[i] for i in index] == pipe.tokenizer.tokenize("dog")
    assert torch.allclose(heat, trace.token_heatmaps(index).mean(0))
    assert torch.allclose(heat, trace.token_heatmap(index))


def test_default_layers_are_all_but_the_mid_block(pipes):
    pipe = pipes("random:sd1-tiny")
    with trace_attention(pipe) as trace:
        generate(pipe)
    not_mid = [s.layer for s in trace.sites if s.layer != "MID"]
    assert torch.equal(trace.word_heatmap("dog"), trace.word_heatmap("dog", layers=not_mid))
    assert not torch.allclose(trace.word_heatmap("dog"), trace.word_heatmap("dog", layers="all"))


def test_layers_are_selected_by_name_and_by_scale(pipes):
    pipe = pipes("random:sd1-tiny")
    with trace_attention(pipe, layers=["IN1", "out11", "OUT3"]) as trace:
        during = processors(pipe)
        generate(pipe)
    hooked = {n.removesuffix(".attn2") for n, p in during.items() if isinstance(p, CrossAttentionRecorder)}
    assert hooked == {"down_blocks.0.attentions.0.transformer_blocks.0", "up_blocks.3.attentions.2.transformer_blocks.0",
                      "up_blocks.1.attentions.0.transformer_blocks.0"}
    full_res = trace.word_heatmap("dog", scales=[1])
    assert torch.equal(full_res, trace.word_heatmap("dog", layers=["IN1", "OUT11"]))
    assert not torch.allclose(full_res, trace.word_heatmap("dog", layers="OUT3"))
    with pytest.raises(ValueError, match="not traced; traced: IN1, OUT3, OUT11"):
        trace.word_heatmap("dog", layers="IN2")
    with pytest.raises(ValueError, match=r"available scales: \[1, 4\]"):
        trace.word_heatmap("dog", scales=[2])
    with pytest.raises(UnknownLayerError, match="IN1, IN2"):
        with trace_attention(pipe, layers=["IN3"]):
            pass


def test_per_step_maps_with_heads_sum_to_daams_global_map(pipes):
    pipe = pipes("random:sd2-tiny")
    with trace_attention(pipe, keep_heads=True) as trace:
        generate(pipe, steps=4)
    everything = trace.word_heatmap("field", steps=range(trace.num_steps))
    assert torch.allclose(everything, trace.word_heatmap("field"), atol=1e-6, rtol=1e-5)
    one, two = trace.word_heatmap("field", step=1), trace.word_heatmap("field", step=-1)
    assert not torch.allclose(one, two)


def test_head_averaged_step_maps_weigh_each_head_like_daam(pipes):
    pipe = pipes("random:sd2-tiny")
    with trace_attention(pipe, keep_heads=True) as heads:
        generate(pipe, steps=2)
    with trace_attention(pipe) as means:
        generate(pipe, steps=2)
    # Bicubic resizing is linear, so at the layers' own size (no resize, clamp is a no-op on
    # probabilities) the head mean weighted by head count equals the per-head average exactly.
    for step in range(2):
        a = heads.token_heatmaps(step=step, layers="IN1")
        b = means.token_heatmaps(step=step, layers="IN1")
        assert torch.allclose(a, b, atol=1e-6)
    assert means.memory_bytes()["steps"] < heads.memory_bytes()["steps"]


def test_step_maps_need_keep_steps(pipes):
    pipe = pipes("random:sd1-tiny")
    with trace_attention(pipe, keep_steps=False) as trace:
        generate(pipe)
    assert trace.memory_bytes()["steps"] == 0 and trace.memory_bytes()["sums"] > 0
    with pytest.raises(RuntimeError, match="keep_steps=True"):
        trace.word_heatmap("dog", step=1)
    with pytest.raises(ValueError, match="either step= or steps="):
        with trace_attention(pipe) as kept:
            generate(pipe)
        kept.word_heatmap("dog", step=1, steps=[1, 2])


def test_every_token_has_a_map_start_and_end_included(pipes):
    pipe = pipes("random:sd2-tiny")
    with trace_attention(pipe) as trace:
        generate(pipe, "a dog")
    tokens = trace.tokens()
    assert len(tokens) == 77 and tokens[0] == pipe.tokenizer.bos_token
    end = tokens.index(pipe.tokenizer.eos_token)
    maps = trace.token_heatmaps()
    assert maps.shape == (77, 16, 16)
    assert torch.equal(trace.token_heatmap(0), maps[0]) and torch.equal(trace.token_heatmap(end), maps[end])
    assert torch.equal(trace.token_heatmap(-1), maps[76])
    with pytest.raises(IndexError, match="77 positions"):
        trace.token_heatmap(77)


def test_non_square_images_give_non_square_maps(pipes):
    pipe = pipes("random:sd1-tiny")  # 96x160 px: latent 12x20, then 6x10, 3x5, 2x3 (rounded up)
    with trace_attention(pipe) as trace:
        generate(pipe, height=96, width=160)
    assert trace.latent_size == (12, 20) and trace.image_size == (96, 160)
    assert trace.word_heatmap("dog").shape == (12, 20)
    assert trace.word_heatmap("dog", size="image").shape == (96, 160)
    assert trace.word_heatmap("dog", layers="all", size=(7, 9)).shape == (7, 9)


def test_each_image_of_a_batch_has_its_own_maps(pipes):
    pipe = pipes("random:sd1-tiny")
    latents = torch.randn(4, 4, 16, 16, generator=torch.Generator().manual_seed(3))
    with trace_attention(pipe) as batch:
        pipe(["a dog", "a red fox"], num_images_per_prompt=2, num_inference_steps=3, latents=latents, output_type="pt")
    assert batch.num_images == 4
    assert [batch.words(image=i) for i in range(4)] == [["a", "dog"]] * 2 + [["a", "red", "fox"]] * 2
    with trace_attention(pipe) as single:
        pipe("a red fox", num_inference_steps=3, latents=latents[3:], output_type="pt")
    assert torch.allclose(batch.word_heatmap("fox", image=3), single.word_heatmap("fox"), atol=1e-6)
    assert not torch.allclose(batch.word_heatmap("fox", image=2), batch.word_heatmap("fox", image=3), atol=1e-6)
    with pytest.raises(WordNotInPromptError):
        batch.word_heatmap("fox", image=0)
    with pytest.raises(IndexError, match="4 image"):
        batch.word_heatmap("dog", image=4)


def test_unconditional_maps_are_recorded_only_on_request(pipes):
    pipe = pipes("random:sd1-tiny")
    with trace_attention(pipe) as trace:
        generate(pipe, negative_prompt="blurry photo")
    with pytest.raises(RuntimeError, match="uncond=True"):
        trace.word_heatmap("blurry", uncond=True)
    with trace_attention(pipe, uncond=True) as trace:
        generate(pipe, negative_prompt="blurry photo")
    assert trace.words(uncond=True) == ["blurry", "photo"]
    assert trace.word_heatmap("blurry", uncond=True).shape == (16, 16)
    assert not torch.allclose(trace.token_heatmap(0, uncond=True), trace.token_heatmap(0))


def test_without_guidance_every_row_is_conditional(pipes):
    pipe = pipes("random:sd1-tiny")
    with trace_attention(pipe) as guided:
        generate(pipe, guidance_scale=7.5)
    with trace_attention(pipe) as unguided:
        generate(pipe, guidance_scale=1.0)
    assert unguided.num_images == guided.num_images == 1
    # Step 0 sees the same noise and prompt either way, so its conditional maps must agree.
    assert torch.allclose(unguided.word_heatmap("dog", step=0), guided.word_heatmap("dog", step=0), atol=1e-6)


# ----------------------------------------------------------------------------- bad input


def test_a_word_not_in_the_prompt_names_the_prompts_words(pipes):
    pipe = pipes("random:sd1-tiny")
    with trace_attention(pipe) as trace:
        generate(pipe)
    with pytest.raises(WordNotInPromptError, match="'a', 'dog', 'runs', 'across', 'the', 'field'"):
        trace.word_heatmap("cat")
    with pytest.raises(WordNotInPromptError):
        trace.word_heatmap("do")  # part of a word is not the word


def test_prompt_embeddings_without_the_text_encoder_leave_words_unknown(pipes):
    pipe = pipes("random:sd1-tiny")
    embeds, negative = pipe.encode_prompt(PROMPT, "cpu", 1, True)
    with trace_attention(pipe) as trace:
        pipe(prompt_embeds=embeds, negative_prompt_embeds=negative, num_inference_steps=2, output_type="pt")
    assert trace.token_heatmap(2).shape == (16, 16)
    with pytest.raises(RuntimeError, match="tokens are unknown; use token_heatmap"):
        trace.word_heatmap("dog")


def test_maps_before_any_generation_raise(pipes):
    with trace_attention(pipes("random:sd1-tiny")) as trace:
        pass
    assert isinstance(trace, AttentionTrace)
    with pytest.raises(RuntimeError, match="nothing was recorded"):
        trace.word_heatmap("dog")


def test_bad_size_is_rejected(pipes):
    pipe = pipes("random:sd1-tiny")
    with trace_attention(pipe) as trace:
        generate(pipe)
    with pytest.raises(ValueError, match="'latent', 'image' or a pair"):
        trace.word_heatmap("dog", size="big")


def test_prompts_past_the_context_are_reported(pipes):
    pipe = pipes("random:sd1-tiny")  # the stand-in tokenizer spells words out: one token per letter
    long_prompt = "a dog " + "x " * 80 + "cat"
    assert check_prompt_length(pipe, PROMPT) == len(pipe.tokenizer.tokenize(PROMPT))
    count = len(pipe.tokenizer.tokenize(long_prompt))
    with pytest.raises(PromptTooLongError, match=f"{count} tokens but the text encoder's context holds 75"):
        check_prompt_length(pipe, long_prompt)
    with trace_attention(pipe) as trace:
        generate(pipe, long_prompt, steps=2)
    assert trace.word_heatmap("dog").shape == (16, 16)
    with pytest.raises(WordNotInPromptError, match="fills the whole 77-token context"):
        trace.word_heatmap("cat")


# ----------------------------------------------------------------------------- heat-map helpers


def test_masks_overlays_and_helpers(pipes):
    pipe = pipes("random:sd1-tiny")
    with trace_attention(pipe) as trace:
        image = generate(pipe)[0]
    mask = trace.word_mask("dog")
    assert mask.dtype == torch.bool and mask.shape == (128, 128) and 0 < mask.sum() < mask.numel()
    assert torch.equal(mask, heatmap_mask(trace.word_heatmap("dog", size="image"), 0.4))
    assert mask_iou(mask, mask) == 1.0 and mask_iou(mask, ~mask) == 0.0
    norm = normalize_heatmap(trace.word_heatmap("dog"))
    assert norm.min() == 0 and torch.isclose(norm.max(), torch.tensor(1.0))
    assert resize_heatmap(torch.ones(3, 4, 4), (8, 6)).shape == (3, 8, 6)
    with pytest.raises(ValueError, match=r"threshold must lie in \[0, 1\)"):
        heatmap_mask(norm, 1.5)
    fig = overlay_figure(image, {w: trace.word_heatmap(w) for w in ["dog", "field"]})
    assert isinstance(fig, Figure) and [ax.get_title() for ax in fig.axes if ax.get_title()] == ["image", "dog", "field"]
    assert [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()] == ["attention"]  # one shared bar


def test_nested_traces_both_record_the_same_maps(pipes):
    pipe = pipes("random:sd1-tiny")
    before = processors(pipe)
    with trace_attention(pipe) as outer, trace_attention(pipe, layers=["OUT4"]) as inner:
        generate(pipe, "a red fox", seed=1)
    assert torch.equal(outer.word_heatmap("fox", layers=["OUT4"]), inner.word_heatmap("fox", layers=["OUT4"]))
    assert outer.word_heatmap("fox").shape == (16, 16)
    assert all(processors(pipe)[n] is p for n, p in before.items())


# ----------------------------------------------------------------------------- bad input, one line each


def test_words_of_a_non_ascii_prompt_read_as_written(pipes):
    pipe = pipes("random:sd1-tiny")
    with trace_attention(pipe) as trace:
        generate(pipe, "a 🐕 in 日本語 café", steps=1)
    assert trace.words() == ["a", "🐕", "in", "日本語", "café"]
    with pytest.raises(WordNotInPromptError, match="its words are: 'a', '🐕', 'in', '日本語', 'café'"):
        trace.word_heatmap("cat")


@pytest.mark.parametrize("step", [True, 1.5, "1", None])
def test_a_step_that_is_not_a_whole_number_is_one_clear_error(pipes, step):
    pipe = pipes("random:sd1-tiny")
    with trace_attention(pipe) as trace:
        generate(pipe, steps=2)
    if step is None:
        with pytest.raises(ValueError, match="an item of steps is a U-Net call index"):
            trace.word_heatmap("dog", steps=[0, 1.0])
        return
    with pytest.raises(ValueError, match=f"step is a U-Net call index .*not {step!r}") as err:
        trace.word_heatmap("dog", step=step)
    assert "\n" not in str(err.value)


def test_asking_a_trace_without_the_unconditional_half_for_it_names_the_option(pipes):
    pipe = pipes("random:sd1-tiny")
    with trace_attention(pipe) as trace:
        generate(pipe, steps=1, negative_prompt="blurry")
    for ask in (lambda: trace.words(uncond=True), lambda: trace.word_heatmap("blurry", uncond=True)):
        with pytest.raises(RuntimeError, match=r"kept no unconditional half: trace with trace_attention\(pipe, uncond=True\)"):
            ask()
