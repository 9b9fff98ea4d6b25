"""Book figures: titles that fit their panels, strips stacked with their labels."""

from __future__ import annotations

import numpy as np
import pytest

from sdprobe.book import plots


def test_long_titles_wrap_to_the_width_of_their_panel():
    text = "three black triangles in the field next to a purple circle"
    wrapped = plots.fit_title(text, 1.8)
    assert wrapped.replace("\n", " ") == text
    assert max(len(line) for line in wrapped.split("\n")) <= int(1.8 * 14)


def test_titles_keep_their_own_line_breaks():
    assert plots.fit_title("✓ a red dog\non the field", 3.0) == "✓ a red dog\non the field"


def test_image_rows_draws_one_axis_per_strip_with_its_label():
    strips = [np.zeros((16, 64, 3), dtype=np.uint8)] * 3
    fig = plots.image_rows(strips, ["a", "b", "c"], columns=["one", "two", "three", "four"], title="t")
    assert [ax.get_ylabel() for ax in fig.axes] == ["a", "b", "c"]
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["one", "two", "three", "four"]
    assert fig._repr_png_().startswith(b"\x89PNG")


def test_image_rows_rejects_a_label_count_that_does_not_match():
    with pytest.raises(ValueError, match="2 images but 1 labels"):
        plots.image_rows([np.zeros((8, 8, 3), dtype=np.uint8)] * 2, ["only one"])


def test_a_player_embeds_every_frame_and_loads_nothing_from_other_hosts():
    from sdprobe.book.plots import player

    frames = [[np.full((32, 32, 3), 20 * k, np.uint8), np.full((32, 32, 3), 200 - 20 * k, np.uint8)] for k in range(6)]
    shown = player(frames, ["x_t", "x̂₀"], [f"step {k} of 6" for k in range(6)], title="demo")
    html = shown._repr_html_()
    assert html.count("data:image/jpeg;base64") == 6 and 'type="range"' in html
    assert "http" not in html and '<i class="fa' not in html and "▶" in html
    assert repr(shown) == "<player: 6 frames of x_t | x̂₀ — demo>" and 0 < shown.nbytes < 200_000
    again = player(frames, ["x_t", "x̂₀"], [f"step {k} of 6" for k in range(6)], title="demo")
    assert again._repr_html_() == html  # the same frames, the same page
    with pytest.raises(ValueError, match="one label per frame"):
        player(frames, ["x_t", "x̂₀"], ["only one label"])
    with pytest.raises(ValueError, match="one image per panel"):
        player(frames, ["x_t"], [f"step {k}" for k in range(6)])


def test_panels_to_compare_share_one_scale_and_wide_grids_fit_the_column():
    maps = [np.zeros((8, 8)), np.full((8, 8), 10.0), np.full((8, 8), 40.0)]
    own = plots.image_grid(maps, ["a", "b", "c"])
    shared = plots.image_grid(maps, ["a", "b", "c"], shared_scale=True, scale_label="change")
    assert len(own.axes) == 6 and len(shared.axes) == 4  # three bars, or one
    assert {im.get_clim() for ax in shared.axes[:3] for im in ax.get_images()} == {(0.0, 40.0)}
    assert shared.axes[-1].get_ylabel() == "change"
    wide = plots.image_grid([np.zeros((8, 8, 3), np.uint8)] * 8, cols=8, size=2.0)
    assert wide.get_figwidth() <= plots.MAX_WIDTH + 1e-9


def test_a_title_as_long_as_a_long_prompt_keeps_three_lines_and_never_reaches_the_figure_title():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    wrapped = plots.fit_title("a dog runs " * 200, 2.4)
    assert wrapped.count("\n") == 2 and wrapped.endswith(" …")
    fig = plots.image_grid([np.zeros((8, 8, 3), np.uint8)] * 2, ["a dog runs " * 200, "x"], size=2.4, title="Fig. 7")
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    top = fig._suptitle.get_window_extent(renderer)
    for ax in fig.axes:
        assert ax.title.get_window_extent(renderer).y1 <= top.y0 + 1, "a panel title runs into the figure title"
