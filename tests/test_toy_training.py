"""The toy model's training recipe: schedules, loss weights, the EMA, and exact resumption."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sdprobe.toy import train
from sdprobe.toy.train.checkpoints import _lr
from sdprobe.toy.train.data import _render
from sdprobe.toy.train.unet import _scheduler_kwargs


def test_learning_rate_warms_up_then_decays_to_zero_on_a_cosine():
    lrs = [_lr(step, 1e-3, 10, 100) for step in range(101)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))
    assert lrs[55] == pytest.approx(0.5e-3) and lrs[100] == pytest.approx(0.0)


def test_min_snr_weights_discount_only_the_least_noisy_timesteps():
    from diffusers import DDPMScheduler

    ab = DDPMScheduler(**_scheduler_kwargs()).alphas_cumprod
    t = torch.arange(1000)
    w = train.min_snr_weights(ab, t, 5.0)
    snr = ab / (1 - ab)
    assert torch.allclose(w[snr <= 5], torch.ones_like(w[snr <= 5]))
    assert torch.allclose(w[snr > 5], 5 / snr[snr > 5])
    assert w[0] < 0.01 and (snr > 5).sum() < 200  # SD's schedule: SNR > 5 only for the first ~150 steps


def test_ema_decay_starts_at_zero_and_is_capped():
    assert train.ema_decay(0) == 0.0
    assert train.ema_decay(10) == pytest.approx(1 - 11 ** -0.75)
    assert train.ema_decay(10**9) == 0.9999


def test_outline_band_marks_pixels_within_two_of_an_edge():
    mask = torch.zeros(1, 1, 20, 20)
    mask[..., 5:15, 5:15] = 1
    band = train.outline_band(mask)[0, 0]
    assert band[10, 10] == 0 and band[0, 0] == 0  # deep inside, far outside
    assert band[5, 10] == 1 and band[3, 10] == 1 and band[6, 10] == 1  # on, just outside, just inside
    assert band[2, 10] == 0 and band[7, 10] == 0


@pytest.mark.slow
def test_scenes_render_the_same_with_any_number_of_workers():
    seeds = np.arange(1_000_000, 1_000_012)
    one = list(train.render_scenes(seeds, workers=1, chunk=5))
    two = list(train.render_scenes(seeds, workers=2, chunk=5))
    assert [len(part[1]) for part in one] == [5, 5, 2]
    arrays, captions, masks, tokens = _render(seeds)
    for k, whole in ((0, arrays), (2, masks), (3, tokens)):
        assert np.array_equal(np.concatenate([part[k] for part in one]), whole)
        assert np.array_equal(np.concatenate([part[k] for part in two]), whole)
    assert [c for part in one for c in part[1]] == captions


@pytest.fixture(scope="module")
def vae_work(tmp_path_factory):
    work = tmp_path_factory.mktemp("toytrain")
    train.train_vae(steps=2, batch=4, work=work)
    return work


def _unet_weights(work):
    state = torch.load(work / "unet.pt", weights_only=False)
    return state, torch.cat([v.flatten() for v in state["unet"].values()])


@pytest.mark.slow
def test_an_interrupted_unet_run_resumes_to_the_same_weights(vae_work, tmp_path):
    options = dict(batch=2, pool_size=16, milestones=(), judge_images=1, judge_steps=2, vae_from=vae_work, warmup=2,
                   scale_scenes=32)
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    train.train_unet(steps=4, work=whole, **options)
    quiet = {**options, "judge_images": 0}  # judging draws images after training: it cannot change the weights
    train.train_unet(steps=2, work=parts, **quiet)
    state = torch.load(parts / "unet.pt", weights_only=False)
    torch.save({**state, "total": 4}, parts / "unet.pt")  # as if stopped at step 2 of 4
    train.train_unet(steps=4, work=parts, **quiet)
    (a_state, a), (b_state, b) = _unet_weights(whole), _unet_weights(parts)
    assert a_state["step"] == b_state["step"] == 4
    assert torch.equal(a, b)
    assert all(torch.equal(x, y) for x, y in zip(a_state["ema"], b_state["ema"]))
    judged = [json.loads(line) for line in (whole / "milestones.jsonl").read_text().splitlines()]
    assert {r["weights"] for r in judged} == {"ema", "raw"} and a_state["prefer"] in {"ema", "raw"}


@pytest.mark.parametrize("elapsed, per_step, expected", [
    (30.0, 0.5, 70 + 120),   # 60 s left at half a second a step: 120 more
    (30.0, 0.01, 500),       # more would fit than the run has: never past its step limit
    (120.0, 0.5, 70),        # the budget is spent already: no step more
])
def test_a_time_budget_takes_the_steps_that_fit_and_never_more_than_the_limit(elapsed, per_step, expected):
    from sdprobe.toy.train.unet import steps_in_budget

    assert steps_in_budget(1.5, elapsed, per_step, 70, 500) == expected


@pytest.mark.slow
def test_a_time_budget_stops_early_and_never_runs_past_the_step_limit(vae_work, tmp_path):
    train.train_unet(steps=200, batch=1, pool_size=8, milestones=(), judge_images=0, vae_from=vae_work,
                     work=tmp_path, warmup=100, minutes=0.0, scale_scenes=32)
    state = torch.load(tmp_path / "unet.pt", weights_only=False)
    assert state["step"] == state["total"] == train.CALIBRATION_STEPS[1]


@pytest.mark.slow
def test_export_ships_one_dtype_a_stock_pipeline_loads(vae_work, tmp_path):
    from diffusers import StableDiffusionPipeline

    train.train_unet(steps=1, batch=1, pool_size=8, milestones=(), judge_images=1, judge_steps=2, vae_from=vae_work,
                     work=vae_work)
    out = train.export(tmp_path / "toy", vae_work, weights="raw")
    pipe = StableDiffusionPipeline.from_pretrained(out, local_files_only=True)
    assert {pipe.unet.dtype, pipe.vae.dtype, pipe.text_encoder.dtype} == {torch.float32}
    image = pipe("a red dog on the field", num_inference_steps=2, output_type="np").images[0]
    assert image.shape == (128, 128, 3)
    assert json.loads((out / "weights.json").read_text()) == {"unet_and_text_encoder": "raw"}


def test_grounding_losses_are_low_when_attention_matches_the_object_and_high_when_it_is_spread():
    from sdprobe.toy.grounding import grounding_loss, pixel_loss

    masks = torch.zeros(1, 2, 16, 16)
    masks[0, 0, 4:12, 4:12] = 1
    tokens = torch.tensor([[[3, 2], [-1, -1]]])  # group 0: shape word at 3, colour at 2; no group 1
    spread = torch.full((1, 256, 77), 1 / 77)
    on_object = torch.full((1, 256, 77), 1e-4)
    on_object[0, :, 0] = 1.0  # everywhere else the start token takes the attention …
    inside = masks[0, 0].flatten().bool()
    on_object[0, inside, 0] = 1e-4
    on_object[0, inside, 3] = 0.5  # … and inside the object the two words share it
    on_object[0, inside, 2] = 0.5
    assert grounding_loss([on_object], masks, tokens) < 0.01 < 0.5 < grounding_loss([spread], masks, tokens)
    assert pixel_loss([on_object], masks, tokens) < pixel_loss([spread], masks, tokens)
    no_words = torch.full((1, 2, 2), -1)
    assert grounding_loss([spread], masks, no_words) == 0 and pixel_loss([spread], masks, no_words) == 0


def test_training_curves_name_where_a_later_stage_begins():
    from sdprobe.toy import card

    row = {"weights": "ema", "single": 0.5, "pair": 0.1, "count": 0.2, "single_background": 0.9}
    log = {"milestones": [{**row, "step": 100, "stage": 1}, {**row, "step": 200, "stage": 1},
                          {**row, "step": 300, "stage": 2}],
           "unet": [{"step": s, "loss": 1.0 / s, "stage": 1 if s <= 200 else 2} for s in (100, 200, 300)]}
    _, labels = card.learning_curves(log).axes[0].get_legend_handles_labels()
    assert labels[-1] == "stage 2 begins" and labels.count("stage 2 begins") == 1
    noise_panel = card.loss_curves(log).axes[0]
    assert noise_panel.get_legend_handles_labels()[1] == ["stage 2 begins"]
