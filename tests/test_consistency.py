"""sdprobe.analysis.consistency: foregrounds, keep-regions and the judge of a one-colour edit, on toy scenes."""

from __future__ import annotations

import numpy as np
import pytest

from sdprobe.analysis.consistency import (
    ForegroundUnavailableError, foreground_mask, judge_edit, keep_region, rembg_model_path,
)
from sdprobe.analysis.metrics import background_mse
from sdprobe.world import edit_scene, make_scene


@pytest.fixture(scope="module")
def scene():
    return make_scene("field", [("red", "dog")], seed=3)


def test_world_foreground_is_the_drawn_object(scene):
    truth = scene.masks()[0]
    tight = foreground_mask(scene.image(), "world", grow=0)
    grown = foreground_mask(scene.image(), "world")
    assert tight.shape == truth.shape and (tight & truth).sum() / (tight | truth).sum() > 0.9
    assert (truth & ~grown).sum() == 0 and grown.sum() > tight.sum()  # the grown mask covers every edge pixel


def test_recolouring_keeps_the_background_exactly(scene):
    edited = edit_scene(scene, colour="blue")
    fg = foreground_mask(scene.image()) | foreground_mask(edited.image())
    assert background_mse(scene.image(), edited.image(), fg) == 0.0
    assert background_mse(scene.image(), edited.image()) > 0.0  # the object itself did change


def test_unknown_foreground_method_names_the_valid_ones(scene):
    with pytest.raises(ValueError, match="'world', 'rembg'"):
        foreground_mask(scene.image(), "grabcut")


def test_rembg_without_its_weights_fails_clearly_and_downloads_nothing(scene, tmp_path, monkeypatch):
    monkeypatch.setenv("U2NET_HOME", str(tmp_path))
    assert rembg_model_path() == tmp_path / "u2net.onnx"
    with pytest.raises(ForegroundUnavailableError, match="rembg"):
        foreground_mask(scene.image(), "rembg")
    assert not any(tmp_path.iterdir())


def test_keep_region_excludes_cells_touching_the_subject():
    mask = np.zeros((16, 12), dtype=bool)
    mask[0:4, 0:3] = True  # the top-left cell of a 4 x 4 grid, fully
    mask[4, 3] = True  # one pixel of the cell below-right
    region = keep_region(mask, (4, 4))
    assert region.shape == (4, 4)
    assert not region[0, 0] and not region[1, 1] and region.sum() == 14
    assert keep_region(mask, (4, 4), max_share=0.5).sum() == 15  # the one-pixel cell is kept


def test_keep_region_rejects_a_grid_finer_than_the_image():
    with pytest.raises(ValueError, match="grid"):
        keep_region(np.zeros((4, 4), bool), (5, 2))


def test_judge_edit_passes_a_recolour_in_place(scene):
    verdict = judge_edit(scene.image(), edit_scene(scene, colour="blue").image(), "blue")
    assert verdict.edited and verdict.kept and verdict.passed and verdict.pose_iou > 0.95


def test_judge_edit_fails_a_moved_subject_and_a_wrong_colour(scene):
    moved = make_scene("field", [("blue", "dog")], seed=11)
    verdict = judge_edit(scene.image(), moved.image(), "blue")
    assert verdict.edited and not verdict.kept and not verdict.passed
    assert not judge_edit(scene.image(), scene.image(), "blue").edited


def test_judge_edit_rejects_a_colour_outside_the_world(scene):
    with pytest.raises(ValueError, match="toy-world colour"):
        judge_edit(scene.image(), scene.image(), "green")
