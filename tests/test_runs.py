"""Batch reruns: notebooks × presets × grids, resumable, failure-tolerant, atomically written."""

from __future__ import annotations

import re
import textwrap

import nbformat
import pytest
from conftest import notebook_layout

from sdprobe.book.execution import NotebookRunError, execute_notebook, failed_path
from sdprobe.book.outputs import REPORT_COLUMNS, BatchLockedError, batch_lock, read_report_rows
from sdprobe.book.plan import SelectionError, expand_grid, load_preset, parse_grid, plan_batch, run_name
from sdprobe.book.plan import select_notebooks
from sdprobe.book.runs import main, run_batch

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
    assert parse_grid(["seed=1,2", "fast=true"]) == {"seed": ["1", "2"], "fast": ["true"]}
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
        with pytest.raises(BatchLockedError, match=rf"another batch \(pid {__import__('os').getpid()}\)"):
            run_batch(["00"], ["default"], **layout)
    with batch_lock(layout["out_dir"]):  # released with the block
        pass


def test_a_lock_left_by_a_dead_process_is_taken_over(layout):
    out = layout["out_dir"]
    out.mkdir(parents=True)
    (out / ".batch.lock").write_text("999999999")  # no such process
    with batch_lock(out) as lock:
        assert lock.read_text() == str(__import__("os").getpid())


@pytest.mark.slow
def test_batches_merge_their_reports_and_clean_a_killed_runs_partial(layout):
    run_batch(["00"], ["default"], **layout)
    stale = layout["out_dir"] / "00_demo" / "default" / ".base.x1yz_8ab.partial.ipynb"
    stale.write_text("{}")  # what a batch killed mid-run leaves
    second = run_batch(["00"], ["sweep"], {"fail": [False]}, **layout)
    assert not stale.exists()
    assert sorted(second.report["ours"]) == ["2", "4", "6"]  # the default run's row is kept
    assert sorted(second.report["preset"]) == ["default", "sweep", "sweep"]


# ----------------------------------------------------------------------------- hostile input (issue 23)

import multiprocessing  # noqa: E402
import os  # noqa: E402
import stat  # noqa: E402
import time  # noqa: E402

from sdprobe.book.outputs import ReportError, check_out_dir, remove_stale_partials, write_report  # noqa: E402


def _hold_lock(out, barrier, log):
    barrier.wait()
    try:
        with batch_lock(out):
            with open(log, "a") as f:
                f.write(f"in {os.getpid()}\n")
            time.sleep(0.02)
            with open(log, "a") as f:
                f.write(f"out {os.getpid()}\n")
    except BatchLockedError:
        pass


@pytest.mark.parametrize("stale", ["none", "dead pid", "empty file"])
def test_the_lock_admits_one_process_at_a_time_in_100_races(tmp_path, stale):
    ctx = multiprocessing.get_context("fork")
    for round_ in range(100):
        out, log = tmp_path / f"r{round_}", tmp_path / f"r{round_}.log"
        out.mkdir()
        if stale != "none":
            (out / ".batch.lock").write_text("999999999" if stale == "dead pid" else "")
        barrier = ctx.Barrier(4)
        procs = [ctx.Process(target=_hold_lock, args=(out, barrier, log)) for _ in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        events = log.read_text().split("\n")[:-1] if log.exists() else []
        holders = 0
        for event in events:
            holders += 1 if event.startswith("in ") else -1
            assert holders in (0, 1), f"round {round_}: two processes held the lock at once: {events}"
        assert events, f"round {round_}: nobody took the lock"


def test_a_run_name_never_ends_like_the_runners_own_files():
    assert run_name({"label": "x"}) == "label=x"
    for value in ("x.failed", "x.FAILED", "x.partial"):
        name = run_name({"label": value})
        assert name.startswith(f"label={value}_") and not name.lower().endswith((".failed", ".partial")), name
    assert run_name({"label": "x.failed"}) != run_name({"label": "x.FAILED"})


@pytest.mark.slow
def test_a_grid_whose_value_looks_like_a_kept_failure_runs_both_and_deletes_neither(tmp_path):
    source = DEMO.replace('fail = False', 'fail = False\nlabel = "x"').replace(
        '"fail": nb.Bool()}', '"fail": nb.Bool(), "label": nb.Str()}')
    layout = notebook_layout(tmp_path, source, {"default": "value: 1\n"})
    result = run_batch(["00"], ["default"], parse_grid(["label=x.failed,x"]), **layout)
    assert len(result.completed) == 2 and result.ok
    assert {p.name for p in (layout["out_dir"] / "00_demo" / "default").iterdir()} == \
        {"label=x.ipynb", f"{run_name({'label': 'x.failed'})}.ipynb"}
    assert len(result.report) == 2


FLAKY = textwrap.dedent('''\
    # %% tags=["parameters"]
    value = 1
    broken = ""

    # %%
    import pathlib
    import sdprobe.book.notebook as nb
    P = nb.check_parameters(globals(), {"value": nb.Int(0, 100), "broken": nb.Str(empty=True)})
    if P.broken and pathlib.Path(P.broken).exists():
        raise RuntimeError("broken now")
    nb.reproduction_report([{"what": "double", "paper": "2v", "ours": str(2 * P.value), "model": "none"}])
    ''')


@pytest.mark.slow
def test_a_failed_force_rerun_keeps_every_row_of_the_complete_runs(tmp_path):
    marker = tmp_path / "broken"
    layout = notebook_layout(tmp_path, FLAKY, {"default": f"broken: {marker}\ngrid:\n  value: [1, 2, 3]\n"})
    first = run_batch(["00"], ["default"], **layout)
    assert len(first.completed) == 3 and len(first.report) == 3
    marker.write_text("")
    again = run_batch(["00"], ["default"], force=True, **layout)
    assert len(again.failed) == 3 and sorted(again.report["ours"]) == ["2", "4", "6"]
    assert (layout["out_dir"] / "report.csv").read_text().count("\n") == 4  # header and the three rows


@pytest.mark.parametrize("content, message", [
    ("a,b\n1,2\n", "it has columns the runner does not write (a, b)"),
    ("", "it is empty"),
    ('notebook,"preset\n', "not valid CSV"),
    (",".join(REPORT_COLUMNS) + "\n1,2,3\n", "line 2 has 3 fields"),
    (",".join(REPORT_COLUMNS) + ",note\n", "(note)"),
    (b"caf\xe9\n", "not UTF-8"),
    ("folder", "is not a file"),
])
def test_a_report_the_runner_did_not_write_is_refused_before_any_run(layout, content, message):
    out = layout["out_dir"]
    out.mkdir(parents=True)
    if content == "folder":
        (out / "report.csv").mkdir()
    else:
        (out / "report.csv").write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ReportError, match=re.escape(message)) as err:
        run_batch(["00"], ["default"], **layout)
    assert "\n" not in str(err.value) and not (out / "00_demo").exists()


@pytest.mark.slow
def test_a_report_edited_after_the_runner_wrote_it_is_refused_and_its_own_is_accepted(layout):
    run_batch(["00"], ["default"], **layout)
    run_batch(["00"], ["default"], **layout)  # its own report: fine
    csv_path = layout["out_dir"] / "report.csv"
    csv_path.write_text(csv_path.read_text().replace(",6,", ",7,"))
    with pytest.raises(ReportError, match="changed after the batch runner wrote them"):
        run_batch(["00"], ["default"], **layout)


def test_a_damaged_report_is_one_line_from_the_command_line_before_any_run(layout, capsys):
    out = layout["out_dir"]
    out.mkdir(parents=True)
    (out / "report.csv").write_text('"unterminated\n')
    status = main(["batch", "--notebooks", "00", "--notebooks-dir", str(layout["notebooks_dir"]),
                   "--presets-dir", str(layout["presets_dir"]), "--out", str(out)])
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("error: ") and err.count("\n") == 1 and not (out / "00_demo").exists()


def test_stray_partial_files_in_the_output_folder_are_left_alone(tmp_path):
    stray = [tmp_path / "sub" / ".draft.partial.ipynb", tmp_path / "a" / "b" / ".notes.partial.ipynb",
             tmp_path / "a" / "b" / ".x.toolong123.partial.ipynb"]
    stale = tmp_path / "00_demo" / "default" / ".base.ab_9xyz0.partial.ipynb"
    for path in (*stray, stale):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
    assert remove_stale_partials(tmp_path) == [stale]
    assert all(p.exists() for p in stray) and not stale.exists()


def test_grid_values_are_the_strings_as_written_until_the_notebook_types_them(layout):
    assert parse_grid(["seed=1:30", "label=no,on,010,0x10"]) == {"seed": ["1:30"], "label": ["no", "on", "010", "0x10"]}
    with pytest.raises(SelectionError, match=r"value is a whole number in the notebook \(default 1\), not '1:30'"):
        plan_batch(["00"], ["default"], parse_grid(["value=1:30"]), **layout)
    with pytest.raises(SelectionError, match="not '0x10'"):
        plan_batch(["00"], ["default"], parse_grid(["value=0x10"]), **layout)
    with pytest.raises(SelectionError, match="fail is true or false"):
        plan_batch(["00"], ["default"], parse_grid(["fail=on"]), **layout)
    runs = plan_batch(["00"], ["default"], parse_grid(["value=010,2", "fail=TRUE"]), **layout)
    assert [r.parameters for r in runs] == [{"value": 10, "fail": True}, {"value": 2, "fail": True}]


def test_a_text_parameter_keeps_its_value_exactly_as_written(tmp_path):
    source = DEMO.replace('fail = False', 'fail = False\nlabel = "x"').replace(
        '"fail": nb.Bool()}', '"fail": nb.Bool(), "label": nb.Str()}')
    layout = notebook_layout(tmp_path, source, {"default": "value: 1\n"})
    runs = plan_batch(["00"], ["default"], parse_grid(["label=no,on,010,0x10"]), **layout)
    assert [r.parameters["label"] for r in runs] == ["no", "on", "010", "0x10"]


@pytest.mark.parametrize("specs, message", [
    (["value=1,1"], "value lists '1' twice"),
    (["value=1", "value=2"], "--grid names 'value' twice"),
    (["value=1,"], "an empty value"),
])
def test_a_grid_value_or_key_given_twice_is_refused_in_one_line(specs, message):
    with pytest.raises(SelectionError, match=re.escape(message)):
        parse_grid(specs)


def test_values_that_type_to_the_same_run_are_refused(layout):
    with pytest.raises(SelectionError, match="value lists 1 twice"):
        plan_batch(["00"], ["default"], parse_grid(["value=1,01"]), **layout)
    (layout["presets_dir"] / "00_demo" / "twice.yaml").write_text("grid:\n  value: [2, 2]\n")
    with pytest.raises(SelectionError, match="value lists 2 twice"):
        plan_batch(["00"], ["twice"], **layout)


def test_the_same_grid_axis_twice_on_the_command_line_is_an_error_not_the_last_one(layout, capsys):
    status = main(["batch", "--notebooks", "00", "--grid", "value=1", "--grid", "value=2",
                   "--notebooks-dir", str(layout["notebooks_dir"]), "--presets-dir", str(layout["presets_dir"]),
                   "--out", str(layout["out_dir"])])
    assert status == 2 and "names 'value' twice" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_batch_outputs_follow_the_umask(layout, umask, mode):
    old = os.umask(umask)
    try:
        result = run_batch(["00"], ["default", "sweep"], {"value": [1], "fail": [False, True]}, **layout)
    finally:
        os.umask(old)
    files = [run.output for run in result.completed] + [e.partial for _, e in result.failed] + \
        [layout["out_dir"] / "report.csv", layout["out_dir"] / "report.md"]
    assert files and {stat.S_IMODE(p.stat().st_mode) for p in files} == {mode}


@pytest.mark.parametrize("where, message", [
    ("", "--out is empty"),
    ("file", "is a file, not a folder"),
    ("file/under", "is a file, not a folder"),
])
def test_an_output_folder_that_cannot_be_one_is_refused_in_one_line(tmp_path, where, message):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ReportError, match=re.escape(message)) as err:
        check_out_dir(str(tmp_path / where) if where else "")
    assert "\n" not in str(err.value)


def test_a_read_only_output_folder_is_refused_in_one_line(tmp_path, monkeypatch):
    import errno
    import tempfile

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(ReportError, match="cannot write into --out .*: Read-only file system"):
        check_out_dir(tmp_path)


def test_a_full_disk_while_writing_the_report_leaves_the_old_one_and_no_temporary_file(tmp_path, monkeypatch):
    import errno

    import pandas as pd

    from sdprobe.book.outputs import REPORT_COLUMNS

    old = pd.DataFrame([dict.fromkeys(REPORT_COLUMNS, "old")], columns=REPORT_COLUMNS)
    write_report(old, tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    real_fdopen, calls = os.fdopen, []

    def fills_up(fd, *args, **kwargs):
        calls.append(fd)
        if len(calls) == 2:  # the second file: report.md
            os.close(fd)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fdopen(fd, *args, **kwargs)

    monkeypatch.setattr(os, "fdopen", fills_up)
    with pytest.raises(ReportError, match="could not write the report in .*: No space left on device") as err:
        write_report(pd.DataFrame([dict.fromkeys(REPORT_COLUMNS, "new")], columns=REPORT_COLUMNS), tmp_path)
    assert "\n" not in str(err.value)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_report_metadata_that_is_not_a_list_of_rows_is_one_line_and_the_other_rows_stay(tmp_path):
    import nbformat as nbf

    from sdprobe.book.outputs import gather_report

    def run(path, meta):
        path.parent.mkdir(parents=True, exist_ok=True)
        output = nbf.v4.new_output("display_data", data={"text/plain": "t"}, metadata={"sdprobe_report": meta})
        nbf.write(nbf.v4.new_notebook(cells=[nbf.v4.new_code_cell("", outputs=[output])]), path)

    run(tmp_path / "00_demo" / "default" / "base.ipynb", [{"what": "x", "ours": "1"}])
    run(tmp_path / "00_demo" / "paper" / "base.ipynb", "not rows")
    with pytest.raises(ReportError, match="is not a list of rows"):
        read_report_rows(tmp_path / "00_demo" / "paper" / "base.ipynb")
    report, problems = gather_report(tmp_path)
    assert list(report["ours"]) == ["1"] and len(problems) == 1 and "paper/base.ipynb" in problems[0]


@pytest.mark.parametrize("argv, message", [
    (["--retries", "3"], "--retries need --ray"),
    (["--cpus-per-run", "2"], "--cpus-per-run need --ray"),
    (["--ray", "--cpus-per-run", "nan"], "--cpus-per-run must be a finite number, not nan"),
    (["--ray", "--gpus-per-run", "inf"], "--gpus-per-run must be a finite number, not inf"),
])
def test_batch_options_that_make_no_sense_are_refused_in_one_line(layout, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_:
        main(["batch", "--notebooks", "00", "--out", str(layout["out_dir"]), *argv])
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_cluster_options_out_of_range_are_one_line_from_the_command_line(layout, capsys):
    assert main(["batch", "--notebooks", "00", "--out", str(layout["out_dir"]), "--ray", "--retries", "-1"]) == 2
    err = capsys.readouterr().err
    assert err == "error: retries must be a finite whole number at least 0, not -1\n"


@pytest.mark.parametrize("address, message", [
    ("localhost:99999", "port 99999 is outside 1–65535"),
    ("[::1]:1", "cannot reach the Ray cluster at [::1]:1: Connection refused"),
    ("nohost", "a Ray address is host:port"),
])
def test_a_ray_address_is_checked_in_one_line_before_any_run(layout, capsys, address, message):
    pytest.importorskip("ray")
    status = main(["batch", "--notebooks", "00", "--ray", address, "--notebooks-dir", str(layout["notebooks_dir"]),
                   "--presets-dir", str(layout["presets_dir"]), "--out", str(layout["out_dir"])])
    err = capsys.readouterr().err
    assert status == 2 and message in err and err.count("\n") == 1, err
    assert not (layout["out_dir"] / "00_demo").exists()


def test_kernel_files_go_when_a_batch_ends_by_a_signal(tmp_path):
    """SIGTERM in the middle of a run: exit 130, the partial kept, the kernel stopped and its
    connection file removed. A folder left by a process killed outright goes at the next start."""
    import signal
    import subprocess
    import sys

    from sdprobe.book.execution import _kernels_root

    slow = DEMO.replace("if P.fail:", "import time\ntime.sleep(60)\nif P.fail:")
    layout = notebook_layout(tmp_path, slow, {"default": "value: 1\n"})
    proc = subprocess.Popen([sys.executable, "-m", "sdprobe.book.runs", "batch", "--notebooks", "00",
                             "--notebooks-dir", str(layout["notebooks_dir"]), "--presets-dir",
                             str(layout["presets_dir"]), "--out", str(layout["out_dir"])],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    mine = _kernels_root() / str(proc.pid)
    deadline = time.monotonic() + 120
    while not list(mine.glob("kernel-*.json")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert list(mine.glob("kernel-*.json")), "the kernel never started"
    time.sleep(3)  # into the sleeping cell
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in err
    assert not mine.exists()
    assert (layout["out_dir"] / "00_demo" / "default" / "base.failed.ipynb").is_file()

    dead = _kernels_root() / "999999999"
    dead.mkdir(parents=True, exist_ok=True)
    (dead / "kernel-left.json").write_text("{}")
    subprocess.run([sys.executable, "-c", "from sdprobe.book.execution import _kernel_dir; _kernel_dir()"], check=True)
    assert not dead.exists()


def _listener(reply: bytes | None):
    """A local TCP server that answers every connection with ``reply`` (None: says nothing)."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            if reply is not None:
                conn.recv(1024)
                conn.sendall(reply)
                conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return server


@pytest.mark.parametrize("reply, message", [
    (b"HTTP/1.0 400 Bad Request\r\n\r\n", "is not a Ray head: it does not speak gRPC ('HTTP/1.0 400 Bad Request')"),
    (None, "does not answer as a Ray head (no reply within 5 s)"),
])
def test_a_port_that_is_not_a_ray_head_fails_in_one_line_within_seconds(layout, capsys, reply, message):
    server = _listener(reply)
    address = f"127.0.0.1:{server.getsockname()[1]}"
    start = time.monotonic()
    try:
        status = main(["batch", "--notebooks", "00", "--ray", address, "--notebooks-dir", str(layout["notebooks_dir"]),
                       "--presets-dir", str(layout["presets_dir"]), "--out", str(layout["out_dir"])])
    finally:
        server.close()
    err = capsys.readouterr().err
    assert status == 2 and err == f"error: {address} {message}\n" and time.monotonic() - start < 30
    assert not layout["out_dir"].exists()  # refused before anything was written


@pytest.mark.slow
def test_the_book_command_writes_no_progress_bar_into_committed_outputs_however_it_is_started(tmp_path, monkeypatch):
    from sdprobe.book.runs import run_book

    monkeypatch.setenv("TQDM_DISABLE", "0")
    monkeypatch.setenv("SDPROBE_PROGRESS", "1")
    source = tmp_path / "00_bar.py"
    source.write_text("# %%\nfrom sdprobe.progress import progress\nfor _ in progress(range(3), desc='work'):\n    pass\n")
    assert run_book(["00"], tmp_path, jobs=1) == []
    outputs = nbformat.read(tmp_path / "00_bar.ipynb", as_version=4).cells[0].outputs
    assert outputs == []
