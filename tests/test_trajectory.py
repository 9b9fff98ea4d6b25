"""record_trajectory: x_t after every step and the predicted x0, for every scheduler and family."""

from __future__ import annotations

import inspect

import numpy as np

import pytest
import torch

from sdprobe.probes.hooks import SecondCallError
from sdprobe.models import SCHEDULERS, load_pipeline
from sdprobe.probes.trajectory import predict_x0, record_trajectory, trajectory_gap

from conftest import TINY_FAMILIES, generator

# Schedulers whose step() returns its own estimate of the clean sample, to check ours against.
WITH_OWN_X0 = ["ddim", "ddpm", "euler", "euler-a", "lms"]


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("name", WITH_OWN_X0)
def test_predicted_x0_matches_the_schedulers_own_estimate(name, prediction):
    scheduler = SCHEDULERS[name].from_config(
        load_pipeline("random:sd1-tiny").scheduler.config, prediction_type=prediction)
    scheduler.set_timesteps(10)
    torch.manual_seed(0)
    sample = torch.randn(1, 4, 8, 8) * scheduler.init_noise_sigma
    for t in scheduler.timesteps[:4]:
        output = torch.randn(1, 4, 8, 8)
        ours = predict_x0(scheduler, output, t, sample)
        extra = {"generator": generator()} if "generator" in inspect.signature(scheduler.step).parameters else {}
        step = scheduler.step(output, t, sample, **extra)
        torch.testing.assert_close(ours, step.pred_original_sample.float(), atol=1e-4, rtol=1e-4)
        sample = step.prev_sample


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_trajectory_records_every_step_and_ends_on_the_decoded_latent(tiny_pipes, family):
    pipe = tiny_pipes(family)
    with record_trajectory(pipe) as traj:
        image = pipe("a dog", num_inference_steps=4, height=64, width=64, output_type="np", generator=generator()).images
    calls = len(pipe.scheduler.timesteps)
    assert len(traj) == calls and len(traj.latents) == calls + 1 and len(traj.timesteps) == calls and traj.complete
    assert all(z.device.type == "cpu" and z.shape == (1, 4, 8, 8) for z in traj.latents + traj.x0)
    decoded = np.stack([np.asarray(im, dtype=np.float32) / 255 for im in traj.decode(pipe, calls)])
    np.testing.assert_allclose(decoded, image, atol=2 / 255)


def test_with_latent_output_the_last_latent_is_the_pipelines_own():
    pipe = load_pipeline("random:sd1-tiny", scheduler="ddim")
    with record_trajectory(pipe) as traj:
        final = pipe("a dog", num_inference_steps=3, height=64, width=64, output_type="latent", generator=generator()).images
    assert not traj.complete and len(traj.latents) == len(traj) == 3
    with pytest.raises(IndexError, match="output_type='latent'"):
        traj.latent(3)
    assert not torch.equal(traj.latents[-1], final.cpu())  # the input of the last step, not its result


def test_a_second_call_in_one_block_is_refused_unless_several_are_asked_for():
    pipe = load_pipeline("random:sd1-tiny", scheduler="ddim")
    with pytest.raises(SecondCallError, match="second one"):
        with record_trajectory(pipe):
            pipe("a dog", num_inference_steps=2, height=64, width=64, generator=generator())
            pipe("a cat", num_inference_steps=2, height=64, width=64, generator=generator())
    with record_trajectory(pipe, several=True) as runs:
        for prompt in ("a dog", "a cat"):
            pipe(prompt, num_inference_steps=2, height=64, width=64, generator=generator())
    assert len(runs) == 2 and all(len(r) == 2 and r.complete for r in runs)
    assert torch.equal(runs[0].latents[0], runs[1].latents[0]) and not torch.equal(runs[0].x0[1], runs[1].x0[1])


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_every_scheduler_can_be_recorded_and_decoded(name):
    pipe = load_pipeline("random:sd1-tiny", scheduler=name)
    with record_trajectory(pipe) as traj:
        pipe("a dog", num_inference_steps=3, height=64, width=64, generator=generator())
    expected = 4 if name == "pndm" else 3  # PNDM's first step is taken twice
    assert len(traj) == expected
    assert traj.decode(pipe, 0, which="x0")[0].size == (64, 64)
    assert traj.decode(pipe, len(traj))[0].size == (64, 64)
    assert traj.step_difference(0, 1).shape == (1, 8, 8)
    assert traj.image_difference(pipe, 0, 1).shape == (1, 64, 64)


def test_sigma_space_latents_are_kept_at_unit_scale():
    pipe = load_pipeline("random:sd1-tiny", scheduler="euler")
    with record_trajectory(pipe) as traj:
        pipe("a dog", num_inference_steps=5, height=64, width=64, generator=generator())
    assert pipe.scheduler.init_noise_sigma > 5  # Euler starts from noise of std sigma_max ≈ 14.6 …
    assert traj.latent(0).std() == pytest.approx(1.0, abs=0.25)  # … which the U-Net sees normalised


def _hook_count(pipe) -> int:
    modules = [pipe.unet, pipe.text_encoder, pipe.vae.post_quant_conv, pipe.vae.decoder]
    return sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in modules)


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_every_hook_is_removed_after_an_exception(error):
    pipe = load_pipeline("random:sd1-tiny")
    before, step = _hook_count(pipe), pipe.scheduler.step
    with pytest.raises(error):
        with record_trajectory(pipe):
            raise error("boom")
    assert _hook_count(pipe) == before and pipe.scheduler.step == step and "step" not in vars(pipe.scheduler)


def test_nested_recorders_both_see_every_step():
    pipe = load_pipeline("random:sd1-tiny", scheduler="ddim")
    before = _hook_count(pipe)
    with record_trajectory(pipe) as outer, record_trajectory(pipe) as inner:
        pipe("a dog", num_inference_steps=3, height=64, width=64, generator=generator())
    assert len(outer) == len(inner) == 3 and torch.equal(outer.x0[2], inner.x0[2])
    assert _hook_count(pipe) == before


def test_two_prompts_from_the_same_noise_start_together_and_part_ways():
    pipe = load_pipeline("random:sd1-tiny", scheduler="ddim")
    runs = []
    for prompt in ("a dog", "a red fox in the snow"):
        with record_trajectory(pipe) as traj:
            pipe(prompt, num_inference_steps=4, height=64, width=64, generator=generator(1))
        runs.append(traj)
    assert torch.equal(runs[0].latents[0], runs[1].latents[0])
    gap = trajectory_gap(*runs, which="latent")
    assert gap.shape == (4,) and gap[-1] > 0
    with pytest.raises(ValueError, match="differ in length"):
        trajectory_gap(runs[0], type(runs[1])())


def test_steps_out_of_range_say_how_many_there_are():
    pipe = load_pipeline("random:sd1-tiny", scheduler="ddim")
    with record_trajectory(pipe) as traj:
        pipe("a dog", num_inference_steps=3, height=64, width=64, generator=generator())
    with pytest.raises(IndexError, match="x0 3 is out of range: the trajectory holds 3"):
        traj.decode(pipe, 3, which="x0")
    with pytest.raises(IndexError, match="latent 9 is out of range: the trajectory holds 4"):
        traj.step_difference(0, 9)
    with pytest.raises(ValueError, match="'latent' or 'x0'"):
        traj.decode(pipe, 0, which="noise")
