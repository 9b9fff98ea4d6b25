"""The explainer chapter's pieces: the forward process, its tables, and figures that repeat exactly."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from sdprobe.book import plots
from sdprobe.book.tables import cross_attention_table, prompt_tokens, text_embedding_shapes
from sdprobe.models.diffusion import add_noise, noise_schedule


def test_the_forward_process_matches_its_closed_form(tiny_pipes):
    scheduler = tiny_pipes("sd1-tiny").scheduler
    x0 = torch.rand(3, 8, 8) * 2 - 1
    steps = [0, 10, 500, 999]
    noisy = add_noise(scheduler, x0, steps, generator=torch.Generator().manual_seed(0))
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    for k, t in enumerate(steps):
        abar = scheduler.alphas_cumprod[t]
        torch.testing.assert_close(noisy[k], abar.sqrt() * x0 + (1 - abar).sqrt() * eps)
    schedule = noise_schedule(scheduler)
    np.testing.assert_allclose(schedule["signal"] ** 2 + schedule["noise"] ** 2, 1.0, atol=1e-12)
    assert schedule["signal"][0] > 0.99 and schedule["signal"][-1] < 0.1  # nearly pure noise at T


def test_add_noise_refuses_timesteps_outside_the_schedule(tiny_pipes):
    with pytest.raises(ValueError, match=r"\[0, 1000\)"):
        add_noise(tiny_pipes("sd1-tiny").scheduler, torch.zeros(3, 8, 8), [1000])


def test_the_token_table_lists_the_prompt_from_start_to_end_token(pipes):
    pipe = pipes("toy")
    table = prompt_tokens(pipe, "a red dog on the field")
    assert list(table["token"]) == ["<|startoftext|>", *[w + "</w>" for w in "a red dog on the field".split()],
                                    "<|endoftext|>"]
    assert text_embedding_shapes(pipe, "a red dog") == {"text_encoder": (1, 77, pipe.text_encoder.config.hidden_size)}


def test_the_cross_attention_table_has_one_row_per_text_layer(pipes):
    pipe = pipes("toy")
    table = cross_attention_table(pipe)
    assert len(table) == 16 and table.loc["OUT11", "text_dim"] == pipe.unet.config.cross_attention_dim
    assert table.loc["IN1", "scale"] == "1/1" and table.loc["MID", "scale"] == "1/8"


def _png(fig) -> bytes:
    return fig._repr_png_()[0]


def test_figures_give_the_same_bytes_every_time():
    images = [Image.new("RGB", (16, 16), (k * 40, 10, 200)) for k in range(3)]
    grid = lambda: plots.image_grid(images, ["a", "b", "c"], title="same")  # noqa: E731
    curve = lambda: plots.line_plot([0, 1, 2], {"x": [1, 2, 4]}, title="same")  # noqa: E731
    assert _png(grid()) == _png(grid()) and _png(curve()) == _png(curve())
    assert Image.open(io.BytesIO(_png(grid()))).size[0] > 100
