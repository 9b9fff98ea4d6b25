"""Batch reruns: notebooks × presets × grids, resumable, failure-tolerant, atomically written."""

from __future__ import annotations

import textwrap

import nbformat
import pytest
from conftest import notebook_layout

from sdprobe.book.runs import (
    BatchLockedError, NotebookRunError, SelectionError, batch_lock, execute_notebook, expand_grid, failed_path,
    load_preset, main, parse_grid, plan_batch, read_report_rows, run_batch, run_name, select_notebooks,
)

DEMO = textwrap.dedent('''\
    # %% tags=["parameters"]
    value = 1
    fail = False

    # %%
    import sdprobe.book.notebook as nb
    P = nb.check_parameters(globals(), {"value": nb.Int(0, 100), "fail": nb.Bool()})

    # %%
    if P.fail:
        raise RuntimeError(f"asked to fail at value {P.value}")
    nb.reproduction_report([{"what": "double", "paper": "2v", "ours": str(2 * P.value), "model": "none"}])
    ''')


@pytest.fixture()
def layout(tmp_path):
    return notebook_layout(tmp_path, DEMO, {"default": "value: 3\n",
                                            "sweep": "grid:\n  value: [1, 2]\n  fail: [false, true]\n",
                                            "bad": "grid:\n  value: 4\n"})


def test_grid_points_are_the_cartesian_product_in_axis_order():
    assert expand_grid({"a": [1, 2], "b": ["x"]}) == [{"a": 1, "b": "x"}, {"a": 2, "b": "x"}]
    assert expand_grid({}) == [{}]
    assert parse_grid(["seed=1,2", "fast=true"]) == {"seed": [1, 2], "fast": [True]}
    with pytest.raises(SelectionError, match="name=value1,value2"):
        parse_grid(["seed"])


@pytest.mark.parametrize("spec", ["2x=1", "a-b=1", "steps x=1,2"])
def test_a_grid_key_that_is_not_a_parameter_name_is_refused(spec):
    with pytest.raises(SelectionError, match="is not a parameter name"):
        parse_grid([spec])


def test_run_names_are_readable_safe_and_unique():
    assert run_name({}) == "base"
    assert run_name({"steps": 20, "seed": 1}) == "seed=1_steps=20"
    spaced_a, spaced_b = run_name({"prompt": "a dog"}), run_name({"prompt": "a/dog"})
    assert "/" not in spaced_b and " " not in spaced_a and spaced_a != spaced_b


def test_selection_errors_list_what_exists(layout):
    with pytest.raises(SelectionError, match="available: 00_demo"):
        select_notebooks(["07"], layout["notebooks_dir"])
    with pytest.raises(SelectionError, match="available: bad, default, sweep"):
        load_preset("00_demo", "paper", layout["presets_dir"])
    with pytest.raises(SelectionError, match="non-empty list"):
        load_preset("00_demo", "bad", layout["presets_dir"])


def test_plan_expands_presets_and_grids_into_output_paths(layout):
    runs = plan_batch(["00"], ["default", "sweep"], **layout)
    assert [r.label for r in runs] == [
        "00_demo/default/base", "00_demo/sweep/fail=false_value=1", "00_demo/sweep/fail=true_value=1",
        "00_demo/sweep/fail=false_value=2", "00_demo/sweep/fail=true_value=2"]
    assert runs[0].output == layout["out_dir"].resolve() / "00_demo" / "default" / "base.ipynb"
    assert runs[0].parameters == {"value": 3}


@pytest.mark.slow
def test_batch_keeps_going_past_failures_resumes_and_gathers_one_report(layout):
    first = run_batch(["00"], ["default", "sweep"], **layout)
    assert len(first.completed) == 3 and len(first.failed) == 2 and not first.skipped
    for run, err in first.failed:
        assert not run.output.exists()
        assert err.partial == failed_path(run.output) and err.partial.exists()
        assert "asked to fail" in err.summary
    assert sorted(first.report["ours"]) == ["2", "4", "6"]
    assert (layout["out_dir"] / "report.md").read_text().count("| 00_demo |") == 3

    again = run_batch(["00"], ["default", "sweep"], **layout)
    assert len(again.skipped) == 3 and not again.completed and len(again.failed) == 2
    assert len(again.report) == 3


@pytest.mark.slow
def test_a_failed_execution_leaves_the_previous_output_untouched(layout, tmp_path):
    source = layout["notebooks_dir"] / "00_demo.py"
    output = tmp_path / "out" / "demo.ipynb"
    execute_notebook(source, output, {"value": 5})
    before = output.read_bytes()
    assert read_report_rows(output)[0]["ours"] == "10"
    with pytest.raises(NotebookRunError) as err:
        execute_notebook(source, output, {"value": 6, "fail": True})
    assert output.read_bytes() == before
    partial = nbformat.read(err.value.partial, as_version=4)
    assert partial.metadata.papermill.parameters == {"value": 6, "fail": True}
    assert not [p for p in output.parent.iterdir() if ".partial." in p.name]


@pytest.mark.slow
def test_an_unknown_parameter_stops_the_notebook_with_a_clear_message(layout, tmp_path):
    with pytest.raises(NotebookRunError, match="vlaue: not a parameter of this notebook"):
        execute_notebook(layout["notebooks_dir"] / "00_demo.py", tmp_path / "x.ipynb", {"vlaue": 2})


def test_command_line_reports_a_bad_selection_with_exit_status_2(layout, capsys):
    status = main(["batch", "--notebooks", "09", "--notebooks-dir", str(layout["notebooks_dir"]),
                   "--presets-dir", str(layout["presets_dir"]), "--out", str(layout["out_dir"])])
    assert status == 2
    assert "no notebook '09'" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["/abs/evil", "../../x/evil", "a/b", "..", ".hidden"])
def test_preset_names_cannot_leave_their_folders(layout, name):
    with pytest.raises(SelectionError, match="bad preset name"):
        plan_batch(["00"], [name], **layout)


def test_malformed_preset_yaml_is_one_line_naming_the_file(layout):
    (layout["presets_dir"] / "00_demo" / "broken.yaml").write_text("value: [1, 2\n")
    with pytest.raises(SelectionError) as err:
        load_preset("00_demo", "broken", layout["presets_dir"])
    assert "broken.yaml: not valid YAML" in str(err.value) and "\n" not in str(err.value)


def test_grid_keys_must_be_names_and_must_be_parameters(layout):
    with pytest.raises(SelectionError, match="not a parameter name"):
        parse_grid(["see d=1,2"])
    with pytest.raises(SelectionError, match="_steps not parameters of the notebook"):
        plan_batch(["00"], ["default"], {"_steps": [3]}, **layout)


def test_a_second_batch_on_the_same_folder_is_refused_while_the_first_holds_it(layout):
    with batch_lock(layout["out_dir"]):
        with pytest.raises(BatchLockedError, match="another batch"):
            run_batch(["00"], ["default"], **layout)
    assert not (layout["out_dir"] / ".batch.lock").exists()


def test_a_lock_left_by_a_dead_process_is_taken_over(layout):
    out = layout["out_dir"]
    out.mkdir(parents=True)
    (out / ".batch.lock").write_text("999999999")  # no such process
    with batch_lock(out) as lock:
        assert lock.read_text() == str(__import__("os").getpid())


@pytest.mark.slow
def test_batches_merge_their_reports_and_clean_a_killed_runs_partial(layout):
    run_batch(["00"], ["default"], **layout)
    stale = layout["out_dir"] / "00_demo" / "default" / ".base.x1.partial.ipynb"
    stale.write_text("{}")  # what a batch killed mid-run leaves
    second = run_batch(["00"], ["sweep"], {"fail": [False]}, **layout)
    assert not stale.exists()
    assert sorted(second.report["ours"]) == ["2", "4", "6"]  # the default run's row is kept
    assert sorted(second.report["preset"]) == ["default", "sweep", "sweep"]
