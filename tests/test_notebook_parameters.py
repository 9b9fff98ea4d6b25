"""check_parameters and the reproduction report: what every chapter's first cells rely on."""

from __future__ import annotations

import re

import pytest

from sdprobe.book.notebook import (
    REPORT_KEY, Bool, Choice, Float, Int, ListOf, Model, ParameterError, Size, Str, check_parameters,
    reproduction_report,
)

SPEC = {"model": Model(), "steps": Int(1, 1000), "guidance": Float(0, 50), "height": Size(),
        "prompts": ListOf(Str()), "flag": Bool(), "scheduler": Choice(("ddim", "pndm"))}
GOOD = {"model": "toy", "steps": 50, "guidance": 7, "height": 128, "prompts": ["a dog"], "flag": True,
        "scheduler": "ddim"}


def test_valid_parameters_come_back_normalised():
    params = check_parameters({**GOOD, "In": [], "_": None}, SPEC)
    assert params.steps == 50 and params.guidance == 7.0 and isinstance(params.guidance, float)
    assert params.prompts == ["a dog"]


def test_a_misspelt_parameter_is_named_with_a_suggestion():
    with pytest.raises(ParameterError, match=r"stpes: not a parameter of this notebook \(did you mean 'steps'\?\)"):
        check_parameters({**GOOD, "stpes": 3}, SPEC)


def test_every_problem_is_reported_at_once():
    with pytest.raises(ParameterError) as err:
        check_parameters({**GOOD, "steps": 0, "height": 100, "scheduler": "heun"}, SPEC)
    message = str(err.value)
    assert "steps: 0 is outside [1, 1000]" in message
    assert "height: image sizes must be multiples of 8" in message
    assert "scheduler: expected one of ['ddim', 'pndm']" in message


def test_a_missing_parameter_is_reported():
    params = dict(GOOD)
    del params["flag"]
    with pytest.raises(ParameterError, match="flag: missing"):
        check_parameters(params, SPEC)


@pytest.mark.parametrize(("check", "value"), [
    (Int(0, 10), True), (Int(0, 10), 1.5), (Float(0, 1), "0.5"), (Float(0, 50), float("nan")),
    (Float(), float("inf")), (Float(), float("-inf")), (Bool(), 1), (Str(), "  "),
    (ListOf(Int(), min_len=2), [1]), (ListOf(Int()), "1,2"), (Model(), "random:sd9"), (Model(), "no such model"),
])
def test_bad_values_are_refused(check, value):
    with pytest.raises(ParameterError):
        check(value)


@pytest.mark.parametrize("name", ["toy", "random:sd1", "random:sdxl-tiny", "CompVis/stable-diffusion-v1-4"])
def test_model_names_load_pipeline_accepts_pass(name):
    assert Model()(name) == name


def test_an_injected_underscore_name_is_not_silently_ignored():
    with pytest.raises(ParameterError, match="_steps: not a parameter of this notebook"):
        check_parameters({**GOOD, "_steps": 3, "_": None, "_i3": "", "__name__": "__main__"}, SPEC)


def test_a_preset_grid_is_pointed_to_batch_reruns():
    with pytest.raises(ParameterError, match="make rerun"):
        check_parameters({**GOOD, "grid": {"seed": [1, 2]}}, SPEC)


def test_report_escapes_cells_and_formats_floats():
    html = reproduction_report([{"what": "a < b", "paper": 0.123456, "ours": 1, "model": "toy"}], display=False)
    assert "a &lt; b" in html and "0.1235" in html and html.count("<tr>") == 2


def test_report_rows_travel_in_the_output_metadata(monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj, metadata=None, raw=False: shown.append(
        (obj if raw else obj.data, metadata)))
    row = {"what": "x", "paper": "1", "ours": "2", "model": "toy", "verdict": "holds"}
    assert reproduction_report([row]) is None
    # the table carries the rows; the "what we found" box follows; the opening finding box is glued
    (table, rows), (box, none), (glued, scrap) = shown
    assert rows == {REPORT_KEY: [row]} and none is None
    assert "sdprobe-report" in table and "What we found" in box and "<em>holds</em>: the whole 95 % interval" in table
    assert scrap["scrapbook"]["name"] == "finding" and "1 claim<" in glued["application/papermill.record/text/html"]


@pytest.mark.parametrize("value, message", [([2, 2], "expected different items, got [2, 2]"),
                                            ([1, 2, 3], "expected exactly 2 item(s), got 3: [1, 2, 3]"),
                                            ([1], "expected exactly 2 item(s), got 1")])
def test_a_pair_is_exactly_two_different_items_never_cut_to_two(value, message):
    with pytest.raises(ParameterError, match=re.escape(message)):
        ListOf(Int(0, 99), min_len=2, max_len=2, distinct=True)(value)
    assert ListOf(Int(0, 99), min_len=1, max_len=3)([1, 2, 3]) == [1, 2, 3]


@pytest.mark.slow
@pytest.mark.parametrize("pair", [[2, 2], [10, 12, 14]])
def test_chapter_01_refuses_a_diff_pair_that_is_not_two_steps_before_drawing(tmp_path, pair):
    from sdprobe.book.execution import NotebookRunError, execute_notebook
    from sdprobe.paths import NOTEBOOKS_DIR

    with pytest.raises(NotebookRunError, match=r"In \[\d+\]: ParameterError: .*diff_pair: expected") as err:
        execute_notebook(NOTEBOOKS_DIR / "01_generation_process_heatmaps.py", tmp_path / "01.ipynb",
                         {"diff_pair": pair}, progress_bar=False)
    assert "nan" not in err.value.summary


def test_the_lab_kernel_starts_with_the_books_pinned_offline_environment(tmp_path):
    import json

    from sdprobe.arithmetic import PINNED
    from sdprobe.book.lab import install_kernel

    spec = json.loads((install_kernel(tmp_path) / "kernel.json").read_text())
    assert spec["env"]["HF_HUB_OFFLINE"] == "1" and spec["env"]["PYTHONHASHSEED"] == "0"
    if all(spec["env"].get(k) == v for k, v in PINNED.items()):  # pinnable here: the pin travels
        assert spec["env"]["SDPROBE_ARITHMETIC"] == "avx2"
    assert spec["argv"][0].endswith("python") or "python" in spec["argv"][0]
