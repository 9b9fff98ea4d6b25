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
    png, meta = fig._repr_png_()
    assert png.startswith(b"\x89PNG") and meta["alt"] == "t"


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


def test_a_book_figure_is_rendered_at_twice_the_width_it_is_shown_at_with_its_title_as_alt_text():
    import io

    from PIL import Image

    fig = plots.new_figure(figsize=(4.0, 2.0))  # widened to the column, aspect kept
    assert tuple(fig.get_size_inches()) == (plots.MAX_WIDTH, 2.0 * plots.MAX_WIDTH / 4.0)
    fig.subplots().set_title("a panel")
    png, meta = fig._repr_png_()
    assert Image.open(io.BytesIO(png)).width == 2 * meta["width"] == 1360
    assert meta["alt"] == "a panel"
    fig.suptitle("Fig. 1 — the whole figure")
    assert fig._repr_png_()[1]["alt"] == "Fig. 1 — the whole figure"


def test_a_slider_shows_one_precomputed_run_per_value_and_names_them():
    from sdprobe.book.plots import slider

    frames = [[np.full((16, 16, 3), 40 * k, dtype=np.uint8)] for k in range(4)]
    shown = slider(frames, ["picture"], [1, 3, 7.5, 12], name="guidance scale", title="demo")
    assert repr(shown) == "<slider: picture at 1, 3, 7.5, 12 — demo>"
    assert 'class="sdprobe-player sdprobe-slider"' in shown._repr_html_()
    assert shown.html.count("frames[3]") == 1 and "frames[4]" not in shown.html and "http://" not in shown.html
    with pytest.raises(ValueError, match="one value per frame"):
        slider(frames, ["picture"], [1, 3], name="guidance scale")


def test_a_grid_too_wide_for_readable_panels_is_cut_into_blocks_that_keep_their_rows():
    from sdprobe.book.plots.grids import MAX_COLUMNS, MIN_PANEL

    images = [np.full((8, 8, 3), k, dtype=np.uint8) for k in range(16)]  # 2 rows × 8 columns
    titles = [f"{'frame' if k < 8 else 'map'} {k % 8}" for k in range(16)]
    fig = plots.image_grid(images, titles, cols=8, size=2.0, keep_rows=True)
    shown = [ax.get_title() for ax in fig.axes if ax.get_images()]
    assert MAX_COLUMNS == 5 and len(shown) == 16
    # 8 columns become two blocks of 4; each block shows its frames, then their maps
    assert shown[:8] == ["frame 0", "frame 1", "frame 2", "frame 3", "map 0", "map 1", "map 2", "map 3"]
    assert fig.get_figwidth() / 4 >= MIN_PANEL
    flat = plots.image_grid(images, titles, cols=6, size=1.0)  # a list wrapped: reading order kept
    assert [ax.get_title() for ax in flat.axes if ax.get_images()] == titles
    assert flat.get_figwidth() / 3 >= MIN_PANEL
