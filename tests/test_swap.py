"""sdprobe.probes.swap: recording U-Net features in run A and swapping them into run B."""

from __future__ import annotations

import json

import pytest
import torch

import sdprobe
from sdprobe.probes.hooks import SecondCallError
from sdprobe.models.layers import UnknownLayerError, layer_map
from sdprobe.paths import CONFIGS_DIR
from sdprobe.probes.swap import FeatureStore, StoreMismatchError, estimate_store_nbytes, record_features, swap_features

FAMILIES = ["random:sd1-tiny", "random:sd2-tiny", "random:sdxl-tiny"]
STEPS = 3
PROMPT_A, PROMPT_B = "a red cube on a table", "a blue ball in the grass"


@pytest.fixture
def sd1(pipes):
    return pipes("random:sd1-tiny")


def generate(pipe, prompt: str, *, seed: int = 1111, steps: int = STEPS, **kwargs) -> torch.Tensor:
    """The final latent of one generation (no VAE decode, to stay fast)."""
    kwargs.setdefault("guidance_scale", 7.5)
    out = pipe(prompt, num_inference_steps=steps, generator=torch.Generator().manual_seed(seed), output_type="latent", **kwargs)
    return out.images


def hook_count(pipe) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in pipe.unet.modules())


def last_layer(pipe) -> str:
    return list(layer_map(pipe.unet))[-1]


# ----------------------------------------------------------------------------- identities


@pytest.mark.parametrize("model", FAMILIES)
def test_swapping_the_last_block_at_every_step_reproduces_run_a(pipes, model):
    # The last up block's output alone determines the noise prediction, so B becomes A exactly.
    pipe = pipes(model)
    with record_features(pipe, [last_layer(pipe)], feature="block") as store:
        a = generate(pipe, PROMPT_A)
    plain_b = generate(pipe, PROMPT_B)
    with swap_features(pipe, store):
        b = generate(pipe, PROMPT_B)
    assert not torch.equal(plain_b, a)
    assert torch.equal(b, a)


@pytest.mark.parametrize("model", ["random:sd1-tiny", "random:sd2-tiny"])
def test_swapping_out11_text_module_reproduces_run_a_for_sd1_and_sd2(pipes, model):
    # In SD 1.x/2.x OUT11's transformer is the last module of the last up block.
    pipe = pipes(model)
    with record_features(pipe, ["OUT11"]) as store:
        a = generate(pipe, PROMPT_A)
    with swap_features(pipe, store, ["OUT11"], steps=range(store.num_steps)):
        b = generate(pipe, PROMPT_B)
    assert torch.equal(b, a)


@pytest.mark.parametrize("model", FAMILIES)
def test_empty_swap_reproduces_plain_run_b(pipes, model):
    pipe = pipes(model)
    with record_features(pipe) as store:
        generate(pipe, PROMPT_A)
    plain_b = generate(pipe, PROMPT_B)
    for empty in ({"layers": []}, {"steps": []}):
        with swap_features(pipe, store, **empty):
            assert torch.equal(generate(pipe, PROMPT_B), plain_b)


@pytest.mark.parametrize("model", ["toy", "random:sd1-tiny"])
def test_in8_adds_nothing_once_out3_is_swapped_whole_since_all_it_computes_flows_through_out3(pipes, model):
    # IN8's output reaches the output only through the deeper blocks and its skip connection,
    # and both enter OUT3's block before OUT3's transformer, whose output the swap replaces.
    pipe = pipes(model)
    with record_features(pipe, ["IN8", "OUT3"]) as store:
        generate(pipe, PROMPT_A)
    with swap_features(pipe, store, ["OUT3"]):
        out3 = generate(pipe, PROMPT_B)
    with swap_features(pipe, store, ["IN8", "OUT3"]):
        both = generate(pipe, PROMPT_B)
    with swap_features(pipe, store, ["IN8"]):
        in8 = generate(pipe, PROMPT_B)
    assert torch.equal(both, out3) and not torch.equal(in8, out3)


def test_swapping_middle_layers_changes_b_without_making_it_a(sd1):
    with record_features(sd1, ["OUT3", "OUT4"]) as store:
        a = generate(sd1, PROMPT_A)
    plain_b = generate(sd1, PROMPT_B)
    with swap_features(sd1, store, steps=range(0, 2)):
        b = generate(sd1, PROMPT_B)
    assert not torch.equal(b, plain_b)
    assert not torch.equal(b, a)


def test_same_parameters_give_identical_swapped_runs_also_within_one_block(sd1):
    with record_features(sd1, ["OUT4", "OUT6"]) as store:
        generate(sd1, PROMPT_A)
    with swap_features(sd1, store, threshold=0.5, steps=[1, 2]):
        first = generate(sd1, PROMPT_B)
    with swap_features(sd1, store, threshold=0.5, steps=[1, 2], several=True):  # two generations in one block
        second, third = generate(sd1, PROMPT_B), generate(sd1, PROMPT_B)
    with pytest.raises(SecondCallError, match="several=True"):
        with swap_features(sd1, store, threshold=0.5, steps=[1, 2]):
            generate(sd1, PROMPT_B), generate(sd1, PROMPT_B)
    assert torch.equal(first, second) and torch.equal(first, third)


# ----------------------------------------------------------------------------- what is stored


def test_steps_are_unet_calls_so_pndms_repeated_timestep_is_two_steps(sd1):
    assert type(sd1.scheduler).__name__ == "PNDMScheduler"
    with record_features(sd1, ["OUT4"], steps=[1, 2]) as store:
        generate(sd1, PROMPT_A)
    assert len(store.timesteps) == store.num_steps == STEPS + 1  # PNDM runs its second timestep twice
    assert store.timesteps[1] == store.timesteps[2]
    assert sorted(store.features) == [("OUT4", 1), ("OUT4", 2)]
    assert store.get("OUT4", 1) is store.features["OUT4", 1]
    assert not torch.equal(store.get("OUT4", 1), store.get("OUT4", 2))


def test_only_requested_layers_and_steps_are_kept(sd1):
    with record_features(sd1, ["IN8", "OUT3"], steps=[0, 2]) as store:
        generate(sd1, PROMPT_A)
    assert {key[0] for key in store.features} == {"IN8", "OUT3"}
    assert {step for name, step in store.features if name == "IN8"} == {0, 2}
    assert store.nbytes == sum(t.numel() * t.element_size() for t in store.features.values())


def test_fp16_cpu_store_halves_the_bytes(sd1):
    with record_features(sd1, ["OUT3", "OUT10"]) as full:
        generate(sd1, PROMPT_A)
    with record_features(sd1, ["OUT3", "OUT10"], device="cpu", dtype=torch.float16) as half:
        generate(sd1, PROMPT_A)
    assert all(t.dtype == torch.float16 and t.device.type == "cpu" for t in half.features.values())
    assert half.nbytes * 2 == full.nbytes
    assert "MiB" in half.describe()


@pytest.mark.parametrize("model", ["random:sd1-tiny", "random:sdxl-tiny"])
def test_size_estimate_matches_a_recorded_store_for_every_layer(pipes, model):
    pipe = pipes(model)
    names = list(layer_map(pipe.unet))
    with record_features(pipe, names, feature="block") as store:
        generate(pipe, PROMPT_A)
    estimate = estimate_store_nbytes(
        pipe.unet, names, feature="block", height=128, width=128, n_calls=len(store.timesteps), dtype=torch.float32
    )
    assert estimate == store.nbytes


def test_all_text_layers_of_sd1_at_640x896_for_50_steps_take_about_4_7_gib_in_fp16():
    config = json.loads((CONFIGS_DIR / "sd1" / "unet.json").read_text())
    nbytes = estimate_store_nbytes(config, height=896, width=640, n_calls=50)
    assert round(nbytes / 2**30, 1) == 4.7


# ----------------------------------------------------------------------------- guidance, region, threshold


def test_each_guidance_half_is_replaced_from_its_own_saved_half(sd1):
    with record_features(sd1, ["OUT6"], steps=[0]) as store_a:
        generate(sd1, PROMPT_A)
    saved = store_a.get("OUT6", 0)
    assert saved.shape[0] == 2 and not torch.equal(saved[0], saved[1])  # [uncond, cond]
    with swap_features(sd1, store_a, steps=[0]), record_features(sd1, ["OUT6"], steps=[0]) as seen:
        generate(sd1, PROMPT_B)  # the inner recorder sees the layer's output after the swap
    assert torch.equal(seen.get("OUT6", 0), saved)


@pytest.mark.parametrize("layer", ["OUT11", "OUT3"])  # latent resolution, and a quarter of it
def test_region_swap_takes_a_inside_the_grid_and_keeps_b_outside(sd1, layer):
    with record_features(sd1, [layer], steps=[0]) as store_a:
        generate(sd1, PROMPT_A)
    with record_features(sd1, [layer], steps=[0]) as store_b:
        generate(sd1, PROMPT_B)
    grid = torch.tensor([[True, False], [False, True]])
    assert store_a.lowest_resolution == (2, 2)
    with swap_features(sd1, store_a, steps=[0], region=grid), record_features(sd1, [layer], steps=[0]) as seen:
        generate(sd1, PROMPT_B)
    a, b, out = (s.get(layer, 0) for s in (store_a, store_b, seen))
    h, w = out.shape[-2:]
    inside = torch.nn.functional.interpolate(grid[None, None].float(), size=(h, w), mode="nearest").bool().expand_as(out)
    assert torch.equal(out[inside], a[inside])
    assert torch.equal(out[~inside], b[~inside])
    assert not torch.equal(a[~inside], b[~inside])


def test_a_finer_region_is_followed_by_fine_layers_and_pooled_so_coarse_layers_never_reach_outside_it(sd1):
    layers = ["OUT11", "OUT3", "MID"]
    with record_features(sd1, layers, steps=[0]) as store_a:
        generate(sd1, PROMPT_A)
    with record_features(sd1, layers, steps=[0]) as store_b:
        generate(sd1, PROMPT_B)
    fine = torch.zeros(4, 4, dtype=torch.bool)  # twice the lowest 2 x 2 grid
    fine[:2, :2] = True  # one whole coarse cell ...
    fine[2, 3] = True  # ... and a quarter of another
    expected_mid = torch.tensor([[True, False], [False, False]])  # only the whole cell survives pooling
    for name in layers:  # one layer at a time: a swap upstream would change what B computes downstream
        with swap_features(sd1, store_a, [name], steps=[0], region=fine), record_features(sd1, [name], steps=[0]) as seen:
            generate(sd1, PROMPT_B)
        a, b, out = (s.get(name, 0) for s in (store_a, store_b, seen))
        h, w = out.shape[-2:]
        grid = expected_mid if (h, w) == (2, 2) else fine
        inside = torch.nn.functional.interpolate(grid[None, None].float(), size=(h, w), mode="nearest").bool()
        inside = inside.expand_as(out)
        assert torch.equal(out[inside], a[inside]) and torch.equal(out[~inside], b[~inside]), name


def test_a_batched_call_takes_one_region_per_image_in_both_guidance_halves(sd1):
    prompts = [PROMPT_A, "a green cone on the snow"]
    gens = lambda: [torch.Generator().manual_seed(s) for s in (1, 2)]  # noqa: E731
    run = lambda texts: sd1(texts, num_inference_steps=STEPS, generator=gens(), output_type="latent")  # noqa: E731
    with record_features(sd1, ["OUT6"], steps=[0]) as store_a:
        run(prompts)
    with record_features(sd1, ["OUT6"], steps=[0]) as store_b:
        run([PROMPT_B, PROMPT_B])
    regions = torch.zeros(2, 2, 2, dtype=torch.bool)
    regions[0, 0, 0], regions[1, 1, :] = True, True  # a corner for the first image, the bottom half for the second
    with swap_features(sd1, store_a, steps=[0], region=regions), record_features(sd1, ["OUT6"], steps=[0]) as seen:
        run([PROMPT_B, PROMPT_B])
    a, b, out = (s.get("OUT6", 0) for s in (store_a, store_b, seen))
    assert out.shape[0] == 4  # [uncond 1, uncond 2, cond 1, cond 2]
    for row in range(4):
        inside = torch.nn.functional.interpolate(regions[row % 2][None, None].float(), size=out.shape[-2:],
                                                 mode="nearest").bool()[0].expand_as(out[row])
        assert torch.equal(out[row][inside], a[row][inside]) and torch.equal(out[row][~inside], b[row][~inside])
    with pytest.raises(StoreMismatchError, match="holds 3 grids, but this call draws 2 images"):
        with swap_features(sd1, store_a, steps=[0], region=torch.ones(3, 2, 2, dtype=torch.bool)):
            run([PROMPT_B, PROMPT_B])


def test_threshold_swap_replaces_only_elements_closer_than_the_threshold(sd1):
    with record_features(sd1, ["OUT4"], steps=[0]) as store_a:
        generate(sd1, PROMPT_A)
    with record_features(sd1, ["OUT4"], steps=[0]) as store_b:
        generate(sd1, PROMPT_B)
    a, b = store_a.get("OUT4", 0), store_b.get("OUT4", 0)
    threshold = float((a[1] - b[1]).abs().median())  # the cond half: the uncond halves agree at step 0
    with swap_features(sd1, store_a, steps=[0], threshold=threshold), record_features(sd1, ["OUT4"], steps=[0]) as seen:
        generate(sd1, PROMPT_B)
    close = (a - b).abs() < threshold
    assert 0 < int(close.sum()) < close.numel()
    assert torch.equal(seen.get("OUT4", 0), torch.where(close, a, b))


def test_a_sweep_reuses_one_store_without_changing_it(sd1):
    with record_features(sd1, ["IN8", "OUT3", "OUT4"]) as store:
        generate(sd1, PROMPT_A)
    before = {k: v.clone() for k, v in store.features.items()}
    configs = [
        {"layers": ["OUT3", "OUT4"], "steps": range(0, 2)},
        {"layers": ["IN8", "OUT3", "OUT4"], "steps": range(1, 3), "region": [[1, 0], [0, 0]]},
        {"layers": ["OUT4"], "steps": range(1, 3), "threshold": 0.1},
    ]
    first, again = [], []
    for results in (first, again):
        for config in configs:
            with swap_features(sd1, store, **config):
                results.append(generate(sd1, PROMPT_B))
    assert all(torch.equal(x, y) for x, y in zip(first, again))
    assert len({tuple(x.flatten()[:8].tolist()) for x in first}) == len(configs)
    assert all(torch.equal(before[k], store.features[k]) for k in before)


# ----------------------------------------------------------------------------- bad input


def test_unknown_layer_lists_the_valid_names(sd1):
    with pytest.raises(UnknownLayerError, match=r"'OUT12'.*valid names: IN1, IN2, .*OUT11"):
        with record_features(sd1, ["OUT3", "OUT12"]):
            pass
    with pytest.raises(UnknownLayerError, match="text-conditioned"):  # OUT0 has no cross-attention
        with record_features(sd1, ["OUT0"]):
            pass
    with pytest.raises(ValueError, match="'text', 'block'"):
        with record_features(sd1, ["OUT3"], feature="attn"):
            pass
    assert hook_count(sd1) == 0


def test_steps_outside_the_schedule_are_refused(sd1):
    # PNDM calls the U-Net once more than its steps: 3 steps are U-Net calls 0-3
    with pytest.raises(ValueError, match=rf"outside the schedule.*{STEPS + 1} steps, numbered 0-{STEPS}"):
        with record_features(sd1, ["OUT3"], steps=[1, 7]):
            generate(sd1, PROMPT_A)
    with pytest.raises(ValueError, match="non-negative integers"):
        with record_features(sd1, ["OUT3"], steps=[-1]):
            pass
    with record_features(sd1, ["OUT3"], steps=range(0, 2)) as store:
        generate(sd1, PROMPT_A)
    with pytest.raises(ValueError, match="outside the schedule"):
        with swap_features(sd1, store, steps=[9]):
            pass
    with pytest.raises(StoreMismatchError, match=r"steps 2 were not recorded; this store holds OUT3 at steps 0-1"):
        with swap_features(sd1, store, steps=range(3)):
            pass
    with pytest.raises(StoreMismatchError, match="OUT4 were not recorded"):
        with swap_features(sd1, store, ["OUT4"]):
            pass


def test_region_of_the_wrong_shape_is_refused(sd1):
    with record_features(sd1, ["OUT3"]) as store:
        generate(sd1, PROMPT_A)
    with pytest.raises(ValueError, match=r"\[H, W\] = \[2, 2\].*k times finer.*one such grid per image; got shape \[14, 10\]"):
        with swap_features(sd1, store, region=torch.ones(14, 10, dtype=torch.bool)):
            pass
    with pytest.raises(ValueError, match="boolean grid"):
        with swap_features(sd1, store, region=[[0.5, 1.0], [0.0, 1.0]]):
            pass
    with pytest.raises(ValueError, match="positive finite number"):
        with swap_features(sd1, store, threshold=-1.0):
            pass


def test_store_from_another_model_is_refused(pipes):
    sd1, sd2 = pipes("random:sd1-tiny"), pipes("random:sd2-tiny")
    with record_features(sd2, ["OUT3"]) as store:
        generate(sd2, PROMPT_A)
    with pytest.raises(StoreMismatchError, match="recorded with 'random:sd2-tiny'; the pipeline is 'random:sd1-tiny'"):
        with swap_features(sd1, store):
            pass


@pytest.mark.parametrize(
    "change, message",
    [
        ({"height": 64, "width": 64}, "recorded with U-Net input"),
        ({"guidance_scale": 1.0}, "recorded with U-Net input"),
        ({"steps": 2}, "the recorded run had timestep"),
    ],
)
def test_store_recorded_with_other_sizes_is_refused_and_hooks_are_removed(sd1, change, message):
    with record_features(sd1, ["OUT3"]) as store:
        generate(sd1, PROMPT_A)
    with pytest.raises(StoreMismatchError, match=message):
        with swap_features(sd1, store, steps=[0]):
            generate(sd1, PROMPT_B, **change)
    assert hook_count(sd1) == 0


def test_empty_store_and_wrong_store_type_are_refused(sd1):
    with record_features(sd1, ["OUT3"]) as store:
        pass  # nothing generated
    with pytest.raises(ValueError, match="this store is empty"):
        with swap_features(sd1, store):
            pass
    with pytest.raises(TypeError, match="FeatureStore"):
        with swap_features(sd1, {"OUT3": torch.zeros(1)}):
            pass
    assert isinstance(store, FeatureStore)


def test_a_second_generation_in_one_record_block_is_refused(sd1):
    with pytest.raises(SecondCallError, match="records one pipeline call"):
        with record_features(sd1, ["OUT3"]):
            generate(sd1, PROMPT_A)
            generate(sd1, PROMPT_B)
    assert hook_count(sd1) == 0


def test_hooks_are_removed_after_an_exception(sd1):
    plain_b = generate(sd1, PROMPT_B)
    with record_features(sd1, ["OUT11"]) as store:
        generate(sd1, PROMPT_A)
    with pytest.raises(RuntimeError, match="boom"):
        with swap_features(sd1, store):
            assert hook_count(sd1) == 2  # the step clock (the swap checks each step through it) and OUT11
            raise RuntimeError("boom")
    with pytest.raises(RuntimeError, match="boom"):
        with record_features(sd1, ["OUT3", "OUT4"]):
            raise RuntimeError("boom")
    assert hook_count(sd1) == 0
    assert torch.equal(generate(sd1, PROMPT_B), plain_b)


def test_sdxl_last_text_layer_alone_does_not_reproduce_run_a(pipes):
    # SDXL's last up block has no cross-attention: after OUT5 it still mixes in B's skip
    # connections and B's pooled-text time embedding, so only the last block (OUT8) gives A.
    pipe = pipes("random:sdxl-tiny")
    assert sdprobe.text_layers(pipe.unet)[-1] == "OUT5" and last_layer(pipe) == "OUT8"
    with record_features(pipe, ["OUT5"], feature="block") as store:
        a = generate(pipe, PROMPT_A)
    with swap_features(pipe, store):
        b = generate(pipe, PROMPT_B)
    assert not torch.equal(b, a)


def test_a_scheduler_replaced_inside_a_swap_block_is_refused(sd1):
    from diffusers import EulerDiscreteScheduler

    with record_features(sd1, ["OUT3"]) as store:
        generate(sd1, PROMPT_A)
    original = sd1.scheduler
    try:
        with pytest.raises(StoreMismatchError, match="this run samples with EulerDiscreteScheduler"):
            with swap_features(sd1, store):
                sd1.scheduler = EulerDiscreteScheduler.from_config(original.config)
                generate(sd1, PROMPT_B)
    finally:
        sd1.scheduler = original
    assert hook_count(sd1) == 0


@pytest.mark.parametrize("threshold", [True, float("inf"), float("nan"), 0, -1])
def test_a_threshold_that_selects_everything_or_nothing_is_refused(sd1, threshold):
    with record_features(sd1, ["OUT3"]) as store:
        generate(sd1, PROMPT_A)
    with pytest.raises(ValueError, match="positive finite number"):
        with swap_features(sd1, store, threshold=threshold):
            pass


def test_a_swap_from_a_store_that_kept_nothing_is_refused(sd1):
    with record_features(sd1, ["OUT3"], steps=[]) as store:
        generate(sd1, PROMPT_A)
    with pytest.raises(StoreMismatchError, match="holds no features"):
        with swap_features(sd1, store):
            pass


@pytest.mark.parametrize("other", ["EulerDiscreteScheduler", "LMSDiscreteScheduler"])
def test_a_store_recorded_under_ddim_is_refused_by_a_run_on_another_scheduler_with_the_same_timesteps(sd1, other):
    import diffusers

    original = sd1.scheduler
    trailing = {"timestep_spacing": "trailing"}  # the spacing under which they agree
    try:
        sd1.scheduler = diffusers.DDIMScheduler.from_config(original.config, **trailing)
        with record_features(sd1, ["OUT3"]) as store:
            generate(sd1, PROMPT_A)
        sd1.scheduler = getattr(diffusers, other).from_config(original.config, **trailing)
        sd1.scheduler.set_timesteps(STEPS)
        assert torch.equal(sd1.scheduler.timesteps.float(), store.timesteps)  # the old check could not see it
        with pytest.raises(StoreMismatchError, match=f"recorded with DDIMScheduler, this run samples with {other}"):
            with swap_features(sd1, store):
                generate(sd1, PROMPT_B)
    finally:
        sd1.scheduler = original
    assert hook_count(sd1) == 0


def test_numpy_and_torch_scalars_are_thresholds_and_text_is_not_a_region(sd1):
    import numpy as np

    with record_features(sd1, ["OUT3"]) as store:
        generate(sd1, PROMPT_A)
    with swap_features(sd1, store, threshold=0.5):
        expected = generate(sd1, PROMPT_B)
    for threshold in (np.float32(0.5), torch.tensor(0.5), np.array(0.5)):
        with swap_features(sd1, store, threshold=threshold):
            assert torch.equal(generate(sd1, PROMPT_B), expected), type(threshold)
    with pytest.raises(ValueError, match="positive finite number"):
        with swap_features(sd1, store, threshold=torch.tensor([0.5, 0.5])):
            pass
    with pytest.raises(ValueError, match="region must be a boolean \\[H, W\\] grid, not the text 'all'") as err:
        with swap_features(sd1, store, region="all"):
            pass
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="not a dict"):
        with swap_features(sd1, store, region={"h": 1}):
            pass
    assert hook_count(sd1) == 0
