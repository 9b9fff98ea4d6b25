"""Batch reruns on a real local Ray cluster (two CPUs, no GPU): the local runner's guarantees hold
across workers — every run done once, failures kept, dead workers retried, resumable."""

from __future__ import annotations

import sys
import textwrap

import pytest
from conftest import notebook_layout

from sdprobe.book.runs import main, run_batch

ray = pytest.importorskip("ray", reason="Ray is the cluster extra (pip install -e '.[cluster]')")

from sdprobe.book.cluster import ClusterError, ClusterOptions, execute_on_ray  # noqa: E402

pytestmark = pytest.mark.slow  # starts a Ray cluster

# A notebook that doubles its value, fails when asked, and with `die` kills the process that
# executes it (the Ray worker running papermill) the first time, as a lost node would.
DEMO = textwrap.dedent('''\
    # %% tags=["parameters"]
    value = 1
    fail = False
    die = ""

    # %%
    import os, pathlib, signal
    import sdprobe.book.notebook as nb
    P = nb.check_parameters(globals(), {"value": nb.Int(0, 100), "fail": nb.Bool(), "die": nb.Str(empty=True)})
    if P.die and not pathlib.Path(P.die).exists():
        pathlib.Path(P.die).write_text("died once")
        os.kill(os.getppid(), signal.SIGKILL)

    # %%
    if P.fail:
        raise RuntimeError(f"asked to fail at value {P.value}")
    nb.reproduction_report([{"what": "double", "paper": "2v", "ours": str(2 * P.value), "model": "none"}])
    ''')


@pytest.fixture(scope="module")
def cluster():
    """One local Ray cluster for the module (starting one takes seconds); stopped afterwards."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ClusterOptions(cpus_per_run=1)
    ray.shutdown()


@pytest.fixture()
def layout(tmp_path):
    return notebook_layout(tmp_path, DEMO, {"small": "value: 1\ngrid:\n  fail: [false, true]\n",
                                            "dies": f"value: 5\ndie: {tmp_path / 'died-once'}\n"})


def _rows(report):
    return sorted(map(tuple, report[["preset", "params", "ours"]].astype(str).values.tolist()))


def test_a_batch_on_ray_completes_keeps_failures_and_equals_the_local_runner(cluster, layout, tmp_path):
    on_ray = run_batch(["00"], ["small", "dies"], cluster=cluster, **layout)
    assert [r.name for r in on_ray.completed] == ["fail=false", "base"]
    assert [(r.name, "asked to fail at value 1" in e.summary) for r, e in on_ray.failed] == [("fail=true", True)]
    assert all(e.partial is not None and e.partial.is_file() for _, e in on_ray.failed)  # kept for reading
    assert (tmp_path / "died-once").is_file()  # the worker of the `dies` run was killed, and the run retried
    local = run_batch(["00"], ["small", "dies"], **{**layout, "out_dir": tmp_path / "local"})
    assert [r.name for r in local.failed[0][:1]] == ["fail=true"]
    assert _rows(on_ray.report) == _rows(local.report) == [("dies", "base", "10"), ("small", "fail=false", "2")]


def test_an_interrupted_batch_on_ray_resumes_without_redoing_finished_runs(cluster, layout):
    first = run_batch(["00"], ["small"], {"value": [1, 2], "fail": [False]}, cluster=cluster, **layout)
    assert len(first.completed) == 2
    done, lost = first.completed
    finished_at = done.output.stat().st_mtime_ns
    lost.output.unlink()  # as if the batch had been killed while this run was executing ...
    (lost.output.parent / f".{lost.output.stem}.x1yz_8ab.partial.ipynb").write_text("{}")  # ... leaving its temp file
    again = run_batch(["00"], ["small"], {"value": [1, 2], "fail": [False]}, cluster=cluster, **layout)
    assert [r.name for r in again.completed] == [lost.name] and [r.name for r in again.skipped] == [done.name]
    assert done.output.stat().st_mtime_ns == finished_at and lost.output.is_file()
    assert not list(lost.output.parent.glob(".*.partial.ipynb")) and len(again.report) == 2


def test_a_run_larger_than_the_cluster_or_an_unreachable_address_is_one_clear_error(cluster, layout, capsys):
    with pytest.raises(ClusterError, match="asks for 3 CPU, the cluster has 2"):
        list(execute_on_ray([], ClusterOptions(cpus_per_run=3)))
    assert main(["batch", "--notebooks", "00", "--presets", "small", "--ray", "127.0.0.1:1",
                 "--notebooks-dir", str(layout["notebooks_dir"]), "--presets-dir", str(layout["presets_dir"]),
                 "--out", str(layout["out_dir"])]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot reach the Ray cluster at 127.0.0.1:1") and err.count("\n") == 1
    assert not (layout["out_dir"] / "00_demo").exists()  # nothing ran
    with pytest.raises(SystemExit):
        main(["batch", "--cpus-per-run", "2"])  # without --ray
    assert "need --ray" in capsys.readouterr().err


def test_without_ray_installed_the_batch_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ClusterError, match=r'pip install -e "\.\[cluster\]"'):
        list(execute_on_ray([], ClusterOptions()))


def test_a_real_ray_head_passes_the_handshake_check(cluster):
    from sdprobe.book.cluster import check_ray_head

    address = ray.get_runtime_context().gcs_address
    check_ray_head(address)  # a gRPC server: answers the HTTP/2 preface with SETTINGS
    assert ClusterOptions(address=address).address == address
