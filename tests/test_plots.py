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
