"""sdprobe.probes.transplant: chroma-key noise, seedlings, the transplant, region search and AAS."""

from __future__ import annotations

import math

import pytest
import torch

import sdprobe
from sdprobe.analysis import heatmaps, metrics
from sdprobe.probes import transplant as tp
from sdprobe.probes.transplant import seedlings as seedlings_module
from sdprobe.probes.transplant import Box, PlacedObject

STEPS = 6
PROMPT = "a red car and a white sheep"
OBJECTS = (
    PlacedObject("a red car", (0.0, 0.25, 0.5, 0.75)),
    PlacedObject("a white sheep", (0.5, 0.25, 1.0, 0.75)),
)


@pytest.fixture(scope="module", params=["sd1-tiny", "sdxl-tiny"])
def pipe(request):
    return sdprobe.load_pipeline(f"random:{request.param}", device="cpu")


@pytest.fixture(scope="module")
def seedlings(pipe):
    return tp.make_seedlings(pipe, OBJECTS, t_crop=3, num_inference_steps=STEPS, guidance_scale=5.0, seed=1)


def _run_latents(pipe, latents, prompt, guidance_scale=5.0):
    """Every latent of a plain run from ``latents``: ``[x_1, x_2, ...]`` as the callback sees them."""
    seen = []

    def keep(p, i, t, kw):
        seen.append(kw["latents"].detach().clone())
        return kw

    pipe(prompt, latents=latents, num_inference_steps=STEPS, guidance_scale=guidance_scale,
         output_type="latent", callback_on_step_end=keep)
    return seen


# ----------------------------------------------------------------------------- noise statistics


@pytest.mark.parametrize("target", [0.07, 0.11])
def test_shift_raises_positive_share_of_channels_1_and_2_by_target(target):
    z = torch.randn(3, 4, 64, 64, generator=torch.Generator().manual_seed(0))
    shifted, delta = tp.shift_channels(z, target)
    rise = tp.positive_share(shifted) - tp.positive_share(z)
    assert torch.all((rise[:, 1:3] - target).abs() <= 0.01)
    assert torch.equal(shifted[:, [0, 3]], z[:, [0, 3]])
    assert torch.allclose(shifted.std(dim=(-2, -1)), z.std(dim=(-2, -1)), atol=1e-5)
    assert (delta > 0).all() and torch.allclose(delta * 100, (delta * 100).round(), atol=1e-4)  # 0.01 grid


def test_shift_is_the_smallest_delta_on_the_grid():
    z = torch.randn(1, 4, 32, 32, generator=torch.Generator().manual_seed(3))
    _, delta = tp.shift_channels(z, 0.07)
    for k, c in enumerate((1, 2)):
        base = (z[0, c] > 0).float().mean()
        smaller = (z[0, c] + delta[0, k] - 0.01 > 0).float().mean()
        assert smaller < base + 0.07 <= (z[0, c] + delta[0, k] > 0).float().mean() + 1e-6


def test_default_shift_target_follows_the_family():
    assert tp.default_shift_target(sdprobe.load_pipeline("random:sd1-tiny", device="cpu")) == 0.07
    assert tp.default_shift_target(sdprobe.load_pipeline("random:sdxl-tiny", device="cpu")) == 0.11


def test_foreground_mask_of_the_full_image_is_tkg_dms_gaussian():
    h = w = 16
    mask = tp.gaussian_box_mask([(0, 0, 1, 1)], h, w)
    c = (torch.arange(h) + 0.5) / h * 2 - 1
    expected = torch.exp(-(c[:, None] ** 2 + c[None, :] ** 2) / (2 * 0.5**2))
    assert torch.allclose(mask, expected, atol=1e-6)


def test_foreground_mask_peaks_inside_each_box():
    mask = tp.gaussian_box_mask([b.box for b in OBJECTS], 16, 16)
    assert mask[8, 4] > 0.9 and mask[8, 12] > 0.9
    assert mask[0, 8] < 0.1 and mask[15, 0] < 0.1


def test_chroma_key_noise_keeps_the_box_and_shifts_the_back():
    z = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    out = tp.chroma_key_noise(z, [(0.25, 0.25, 0.75, 0.75)], target=0.11)
    diff = out - z
    assert torch.equal(diff[:, [0, 3]], torch.zeros_like(diff[:, [0, 3]]))
    assert diff[:, 1:3, 7:9, 7:9].abs().max() < 0.05          # near the centre: the original noise
    assert (diff[:, 1:3, 0, 0] > 0.2).all()                    # a corner: shifted towards green


# ----------------------------------------------------------------------------- boxes and bad input


@pytest.mark.parametrize("bad", [(-0.1, 0, 0.5, 0.5), (0, 0, 1.2, 0.5), (0.5, 0, 0.4, 1), (0, 0, 0, 1)])
def test_box_outside_the_image_or_empty_is_rejected(bad):
    with pytest.raises(ValueError, match="outside the image"):
        Box(*bad)


def test_box_smaller_than_one_latent_cell_is_rejected():
    with pytest.raises(ValueError, match="at least one latent cell"):
        Box(0.1, 0.1, 0.15, 0.5).cells(16, 16)
    assert Box(0, 0, 1 / 16, 1 / 16).cells(16, 16) == (0, 1, 0, 1)


def test_object_word_must_be_in_its_prompt():
    with pytest.raises(ValueError, match="'dog' is not in the object prompt"):
        PlacedObject("a red car", (0, 0, 0.5, 0.5), word="dog")
    assert PlacedObject("a blue cell phone", (0, 0, 0.5, 0.5), word="cell phone").word == "cell phone"


def test_make_seedlings_rejects_t_crop_outside_the_schedule(pipe):
    length = tp.schedule_length(pipe, STEPS)
    for bad in (0, length, -1):
        with pytest.raises(ValueError, match=rf"t_crop={bad} is outside the schedule.*\[1, {length - 1}\]"):
            tp.make_seedlings(pipe, OBJECTS, t_crop=bad, num_inference_steps=STEPS)


def test_make_seedlings_rejects_a_box_below_one_latent_cell(pipe):
    tiny = PlacedObject("a red car", (0.0, 0.0, 0.03, 0.5))
    with pytest.raises(ValueError, match="at least one latent cell"):
        tp.make_seedlings(pipe, [tiny], t_crop=2, num_inference_steps=STEPS)


def test_transplant_rejects_t_transplant_outside_the_schedule_and_missing_words(pipe, seedlings):
    length = tp.schedule_length(pipe, STEPS)
    with pytest.raises(ValueError, match=rf"t_transplant={length} is outside the schedule"):
        tp.transplant_seedlings(pipe, seedlings, prompt=PROMPT, background_prompt="a field", t_transplant=length)
    with pytest.raises(ValueError, match="t_transplant=-1 is outside"):
        tp.transplant_seedlings(pipe, seedlings, prompt=PROMPT, background_prompt="a field", t_transplant=-1)
    with pytest.raises(ValueError, match="'sheep' is not a word of the full prompt"):
        tp.transplant_seedlings(pipe, seedlings, prompt="a red car and a dog", background_prompt="a field", t_transplant=2)


# ----------------------------------------------------------------------------- seedlings


def test_seedling_is_the_latent_after_t_crop_steps_of_the_object_run(pipe, seedlings):
    assert seedlings.latents.shape == (2, 4, 16, 16)
    assert not pipe.interrupt  # the early stop is not left behind
    for k, obj in enumerate(OBJECTS):
        path = _run_latents(pipe, seedlings.noise[k : k + 1], obj.prompt)
        assert torch.allclose(seedlings.latents[k], path[seedlings.t_crop - 1][0], atol=1e-4)


def test_seedlings_start_from_chroma_key_noise_on_their_own_box(pipe, seedlings):
    base = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    for k, obj in enumerate(OBJECTS):
        want = tp.chroma_key_noise(base[k : k + 1], [obj.box], target=tp.default_shift_target(pipe))
        assert torch.equal(seedlings.noise[k : k + 1], want)


def test_make_seedlings_is_deterministic(pipe, seedlings):
    again = tp.make_seedlings(pipe, OBJECTS, t_crop=3, num_inference_steps=STEPS, guidance_scale=5.0, seed=1)
    assert torch.equal(again.latents, seedlings.latents)


# ----------------------------------------------------------------------------- transplant


def test_paste_seedlings_overwrites_exactly_the_box_regions():
    bg = torch.randn(3, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    seeds = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    boxes = [(0, 0, 0.25, 0.5), (0.5, 0.5, 1, 1)]
    out = tp.paste_seedlings(bg, seeds, boxes)
    inside = torch.zeros(16, 16, dtype=torch.bool)
    inside[0:8, 0:4] = True
    inside[8:16, 8:16] = True
    assert torch.equal(out[:, :, 0:8, 0:4], seeds[0:1, :, 0:8, 0:4].expand(3, -1, -1, -1))
    assert torch.equal(out[:, :, 8:16, 8:16], seeds[1:2, :, 8:16, 8:16].expand(3, -1, -1, -1))
    assert torch.equal(out[:, :, ~inside], bg[:, :, ~inside])
    scaled = tp.paste_seedlings(bg, seeds, boxes, scale=torch.full((3, 2), 2.0))
    assert torch.equal(scaled[:, :, 0:8, 0:4], 2 * out[:, :, 0:8, 0:4])
    with pytest.raises(ValueError, match="2 seedlings but 1 boxes"):
        tp.paste_seedlings(bg, seeds, boxes[:1])


def test_transplant_midway_plants_seedlings_into_the_background_run(pipe, seedlings):
    t = 2
    res = tp.transplant_seedlings(pipe, seedlings, prompt=PROMPT, background_prompt="a green field",
                        t_transplant=t, num_images=2, seed=5, output_type="latent")
    assert res.images.shape == (2, 4, 16, 16)
    background = _run_latents(pipe, res.noise, ["a green field"] * 2)[t - 1]
    planted = tp.paste_seedlings(background, seedlings.latents, [o.box for o in OBJECTS])  # no rescale at t > 0
    assert torch.allclose(res.planted, planted, atol=1e-4)
    assert torch.equal(res.planted[:, :, 4:12, 0:8], seedlings.latents[0:1, :, 4:12, 0:8].expand(2, -1, -1, -1))


def test_transplant_switches_to_the_full_prompt_after_planting(pipe, seedlings):
    seen = []
    hook = pipe.unet.register_forward_pre_hook(
        lambda m, args, kwargs: seen.append(kwargs["encoder_hidden_states"].detach().clone()), with_kwargs=True)
    try:
        tp.transplant_seedlings(pipe, seedlings, prompt=PROMPT, background_prompt="a green field",
                      t_transplant=2, output_type="latent")
    finally:
        hook.remove()
    bg = seedlings_module._loop_embeds(pipe, seedlings_module._encode(pipe, ["a green field"], None, 5.0), 5.0)["prompt_embeds"]
    full = seedlings_module._loop_embeds(pipe, seedlings_module._encode(pipe, [PROMPT], None, 5.0), 5.0)["prompt_embeds"]
    assert all(torch.equal(e, bg) for e in seen[:2])
    assert all(torch.equal(e, full) for e in seen[2:]) and len(seen) > 2


def test_transplant_at_zero_rescales_seedlings_into_the_starting_noise(pipe, seedlings):
    res = tp.transplant_seedlings(pipe, seedlings, prompt=PROMPT, background_prompt="a green field",
                        t_transplant=0, num_images=2, seed=5, output_type="latent")
    ratio = res.noise.flatten(1).std(dim=1)[:, None] / seedlings.latents.flatten(1).std(dim=1)[None, :]
    want = tp.paste_seedlings(res.noise, seedlings.latents, [o.box for o in OBJECTS], scale=ratio)
    assert torch.equal(res.planted, want)
    again = tp.transplant_seedlings(pipe, seedlings, prompt=PROMPT, background_prompt="a green field",
                          t_transplant=0, num_images=2, seed=5, output_type="latent")
    assert torch.equal(again.images, res.images)


# ----------------------------------------------------------------------------- region search


def test_box_kernel_is_high_in_the_centre_and_negative_at_the_border():
    k = heatmaps.box_kernel(6, 8)
    assert k.shape == (6, 8)
    assert k[2:4, 3:5].min() > 0.5
    assert k[0].max() < 0 and k[:, 0].max() < 0
    assert k.max() == pytest.approx(1.0) and k.sum().abs() < 1e-4   # zero-sum: a flat map scores 0


def test_region_search_finds_a_planted_blob():
    g = torch.Generator().manual_seed(0)
    heat = 0.1 * torch.rand(32, 32, generator=g)
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    heat += torch.exp(-((yy - 20) ** 2 + (xx - 9) ** 2) / (2 * 3.0**2))  # blob centred at row 20, col 9
    box = heatmaps.search_region(heat, (0.25, 0.25))
    assert (box.width, box.height) == (0.25, 0.25)
    cx, cy = (box.x0 + box.x1) / 2 * 32, (box.y0 + box.y1) / 2 * 32
    assert abs(cx - 9.5) <= 1 and abs(cy - 20.5) <= 1
    per_step = torch.stack([heat, heat, torch.zeros(32, 32)])  # [steps, h, w] averages first
    assert heatmaps.search_region(per_step, Box(0, 0, 0.25, 0.25)) == box


def test_region_search_errors():
    with pytest.raises(ValueError, match="smaller than one cell"):
        heatmaps.search_region(torch.rand(8, 8), (0.05, 0.5))
    with pytest.raises(ValueError, match=r"\[h, w\] or \[steps, h, w\]"):
        heatmaps.search_region(torch.rand(8), (0.5, 0.5))
    with pytest.raises(ValueError, match="NaN"):
        heatmaps.search_region(torch.full((8, 8), math.nan), (0.5, 0.5))


# ----------------------------------------------------------------------------- AAS


def _blob(r, c, size=16):
    m = torch.zeros(size, size)
    m[r : r + 4, c : c + 4] = 1.0
    return m


def test_aas_of_identical_maps_is_one_and_of_disjoint_maps_zero():
    a = _blob(2, 2)
    assert metrics.attention_assignment_score([(a, a)]).score == pytest.approx(1.0)
    assert metrics.attention_assignment_score([(a, 5 * a)]).score == pytest.approx(1.0)  # scale-free
    assert metrics.attention_assignment_score([(a, _blob(10, 10))]).score == 0.0


def test_aas_averages_over_steps_and_pairs():
    a, b = _blob(2, 2), _blob(10, 10)
    steps = torch.stack([a, a, a, a])
    nouns = torch.stack([a, a, b, b])
    res = metrics.attention_assignment_score([(steps, nouns), (torch.stack([b] * 4), torch.stack([b] * 4))])
    assert res.per_step.shape == (2, 4)
    assert res.per_pair.tolist() == pytest.approx([0.5, 1.0])
    assert res.score == pytest.approx(0.75)


def test_aas_margin_is_negative_when_the_attribute_sits_on_the_other_noun():
    car, sheep = _blob(2, 2), _blob(10, 10)
    swapped = metrics.attention_assignment_score([(sheep, car), (car, sheep)])
    bound = metrics.attention_assignment_score([(car, car), (sheep, sheep)])
    assert swapped.score == 0.0 and (swapped.margin == -1).all()
    assert bound.score == 1.0 and (bound.margin == 1).all()
    assert math.isnan(metrics.attention_assignment_score([(car, car)]).margin[0])


def test_aas_zero_attention_scores_zero_and_bad_maps_are_rejected():
    assert metrics.attention_assignment_score([(torch.zeros(8, 8), torch.ones(8, 8))]).score == 0.0
    with pytest.raises(ValueError, match="non-negative"):
        metrics.attention_assignment_score([(-torch.ones(8, 8), torch.ones(8, 8))])
    with pytest.raises(ValueError, match="share one"):
        metrics.attention_assignment_score([(torch.ones(8, 8), torch.ones(4, 4))])
    with pytest.raises(ValueError, match="at least one"):
        metrics.attention_assignment_score([])


# ----------------------------------------------------------------------------- the shipped prompts


def test_drawbench_colors_file_holds_ten_two_object_prompts_with_valid_boxes():
    prompts = tp.load_layout_prompts()
    assert len(prompts) == 10
    assert len({p.prompt for p in prompts}) == 10
    for p in prompts:
        assert len(p.objects) == 2
        for o in p.objects:
            assert o.attribute and o.word in p.prompt.lower() and o.prompt == f"a {o.attribute} {o.word}"
            o.box.cells(16, 16)  # at least one toy latent cell
        assert tp.Box.of(p.objects[0].box).x1 <= tp.Box.of(p.objects[1].box).x0  # side by side
    # the second five swap the colours of the first five
    for a, b in zip(prompts[:5], prompts[5:]):
        assert [o.attribute for o in a.objects] == [o.attribute for o in b.objects][::-1]
        assert [o.word for o in a.objects] == [o.word for o in b.objects]


def test_toy_section_mirrors_the_pattern_in_the_toy_worlds_words():
    from sdprobe.world import PALETTE, SHAPES

    prompts = tp.load_layout_prompts(section="toy")
    assert len(prompts) == 10
    for p in prompts:
        assert p.background in p.prompt
        assert all(o.attribute in PALETTE and o.word in SHAPES for o in p.objects)
    for a, b in zip(prompts[:5], prompts[5:]):
        assert [o.attribute for o in a.objects] == [o.attribute for o in b.objects][::-1]
    with pytest.raises(ValueError, match="no section 'boxes'"):
        tp.load_layout_prompts(section="boxes")


def test_layout_prompt_rejects_an_object_word_missing_from_its_prompt():
    with pytest.raises(ValueError, match="'sheep' is not in the prompt"):
        tp.LayoutPrompt("A red car and a white dog.", OBJECTS, background="a field")


def test_make_seedlings_leaves_the_pipeline_usable_after_an_error(pipe):
    calls = []

    def fail_on_second_call(module, args, kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("boom")

    hook = pipe.unet.register_forward_pre_hook(fail_on_second_call, with_kwargs=True)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            tp.make_seedlings(pipe, OBJECTS, t_crop=3, num_inference_steps=STEPS)
    finally:
        hook.remove()
    assert not pipe.interrupt
    assert len(_run_latents(pipe, torch.randn(1, 4, 16, 16), "a cup")) == tp.schedule_length(pipe, STEPS)


def test_assignment_pairs_stacks_a_heatmap_callable_over_steps():
    car, sheep = _blob(2, 2), _blob(10, 10)
    maps = {"red": car, "car": car, "white": car, "sheep": sheep}  # "white" leaks onto the car
    asked = []

    def heatmap(word, step):
        asked.append((word, step))
        return maps[word] * (step + 1)

    objs = [PlacedObject("a red car", (0, 0, 0.5, 0.5), attribute="red"),
            PlacedObject("a white sheep", (0.5, 0.5, 1, 1), attribute="white")]
    pairs = metrics.assignment_pairs(heatmap, objs, steps=[0, 3])
    assert pairs[0][0].shape == (2, 16, 16) and ("sheep", 3) in asked
    res = metrics.attention_assignment_score(pairs)
    assert res.per_pair.tolist() == pytest.approx([1.0, 0.0]) and res.margin[1] == -1
    with pytest.raises(ValueError, match="no attribute word"):
        metrics.assignment_pairs(heatmap, OBJECTS, steps=[0])


def test_seedlings_from_another_model_or_schedule_are_refused():
    from sdprobe.models import load_pipeline

    pipe = load_pipeline("random:sd1-tiny", scheduler="ddim")
    seeds = tp.make_seedlings(pipe, OBJECTS, t_crop=1, num_inference_steps=3)
    other = load_pipeline("random:sd2-tiny", scheduler="ddim")
    with pytest.raises(ValueError, match="grew under another model"):
        tp.transplant_seedlings(other, seeds, prompt=PROMPT, background_prompt="a field", t_transplant=0)
    euler = load_pipeline("random:sd1-tiny", scheduler="euler")
    with pytest.raises(ValueError, match="grew under another scheduler"):
        tp.transplant_seedlings(euler, seeds, prompt=PROMPT, background_prompt="a field", t_transplant=0)


def test_the_interrupt_flag_stops_a_run_and_is_cleared_afterwards():
    """diffusers' documented early stop (pipe._interrupt): a test that fails if diffusers changes it."""
    from sdprobe.models import load_pipeline
    from sdprobe.probes.hooks import execution_device, stop_after

    pipe = load_pipeline("random:sd1-tiny", scheduler="ddim")
    seen = []
    with stop_after(pipe, 2) as stop:
        pipe("a dog", num_inference_steps=5, height=64, width=64, output_type="latent",
             callback_on_step_end=lambda p, i, t, kw: (seen.append(i), stop(p, i, t, kw))[1])
    assert seen == [0, 1] and pipe.interrupt is False
    assert execution_device(pipe) == pipe.device


# ----------------------------------------------------------------------------- bad input, one line each


@pytest.mark.parametrize("prompt, message", [("!!!", "has no word to name the object by"), ("   ", "at least one word"),
                                             (3, "at least one word")])
def test_an_object_prompt_without_words_is_one_clear_error(prompt, message):
    with pytest.raises(ValueError, match=message):
        PlacedObject(prompt, (0, 0, 0.5, 0.5))


@pytest.mark.parametrize("box", ["left", {"x0": 0}, (0, 0, "a", 1), 0.5, (0, 0, True, 1)])
def test_a_box_that_is_not_four_numbers_is_one_clear_error(box):
    with pytest.raises(ValueError, match="a box is \\(x0, y0, x1, y1\\)") as err:
        PlacedObject("a red car", box)
    assert "\n" not in str(err.value)


def test_a_bool_or_fractional_step_or_count_is_refused_not_read_as_a_number(pipe, seedlings):
    with pytest.raises(ValueError, match="t_crop=True is outside the schedule"):
        tp.make_seedlings(pipe, OBJECTS, t_crop=True, num_inference_steps=STEPS)
    with pytest.raises(ValueError, match="t_transplant=True is outside the schedule"):
        tp.transplant_seedlings(pipe, seedlings, prompt=PROMPT, background_prompt="a field", t_transplant=True)
    with pytest.raises(ValueError, match="num_images must be a whole number of at least 1, not 1.5"):
        tp.transplant_seedlings(pipe, seedlings, prompt=PROMPT, background_prompt="a field", t_transplant=0,
                                num_images=1.5)


def test_a_prompt_longer_than_the_context_is_refused_never_cut(pipe, seedlings):
    long = PROMPT + " " + "and a very tall tree" * 20
    with pytest.raises(sdprobe.PromptTooLongError, match="the full prompt has .* tokens"):
        tp.transplant_seedlings(pipe, seedlings, prompt=long, background_prompt="a field", t_transplant=0)
    with pytest.raises(sdprobe.PromptTooLongError, match="the background prompt has"):
        tp.transplant_seedlings(pipe, seedlings, prompt=PROMPT, background_prompt=long, t_transplant=1)
    with pytest.raises(sdprobe.PromptTooLongError, match="the negative prompt has"):
        tp.make_seedlings(pipe, OBJECTS, t_crop=2, num_inference_steps=STEPS, negative_prompt=long)


def test_the_word_check_reads_what_the_text_encoder_sees(pipe, seedlings):
    # every word fits the text, but past the 75th token the encoder would not see "sheep"
    crowded = "a red car " + "on a road " * 25 + "and a white sheep"
    with pytest.raises(sdprobe.PromptTooLongError):
        tp.transplant_seedlings(pipe, seedlings, prompt=crowded, background_prompt="a field", t_transplant=0)
    with pytest.raises(sdprobe.WordNotInPromptError, match="'sheep' is not a word of the full prompt"):
        tp.transplant_seedlings(pipe, seedlings, prompt="a red car and a white sheeps", background_prompt="a field",
                                t_transplant=0)
