"""The pinned arithmetic: every process that writes or compares outputs runs AVX2 kernels.

These fail when the pin is missing from pytest's process, from a notebook kernel nbval or the
runner starts, or from the environment the runner hands its kernels.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import pytest

from sdprobe import arithmetic
from sdprobe.paths import REPO_ROOT

pinnable = pytest.mark.skipif(arithmetic.unpinnable() is not None or arithmetic.mode() == "native",
                              reason=f"arithmetic not pinned here: {arithmetic.unpinnable() or 'ARITHMETIC=native'}")

#: What a process reports of its kernels: torch's CPU capability, NumPy's dispatch targets that
#: are on, oneDNN's ISA (printed by its verbose mode on the first convolution), torch's threads.
REPORT = textwrap.dedent('''\
    import json, os, subprocess, sys
    import numpy, torch
    from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    conv = ("import torch; torch.nn.Conv2d(64, 64, 3, padding=1)(torch.randn(2, 64, 32, 32))")
    verbose = subprocess.run([sys.executable, "-c", conv], capture_output=True, text=True,
                             env={**os.environ, "ONEDNN_VERBOSE": "1"}).stdout
    isa = [line.rsplit("isa:", 1)[1] for line in verbose.splitlines() if ",cpu,isa:" in line]
    print(json.dumps({"aten": torch.backends.cpu.get_cpu_capability(),
                      "numpy": sorted(f for f in __cpu_dispatch__ if __cpu_features__[f]),
                      "onednn": isa[0] if isa else None, "threads": torch.get_num_threads(),
                      "env": {k: os.environ.get(k) for k in %r}}))
    ''') % sorted(arithmetic.PINNED)


def assert_pinned(report: dict) -> None:
    assert report["aten"] == "AVX2", f"torch runs {report['aten']} kernels"
    assert report["numpy"] == ["X86_V3"], f"NumPy dispatches to {report['numpy']}"
    assert report["onednn"] is not None and "AVX2" in report["onednn"] and "512" not in report["onednn"], \
        f"oneDNN runs {report['onednn']}"
    assert report["threads"] == 1
    assert report["env"] == arithmetic.PINNED


def run_report(env: dict[str, str] | None = None) -> dict:
    import json

    out = subprocess.run([sys.executable, "-c", REPORT], capture_output=True, text=True, check=True,
                         env=env if env is not None else os.environ.copy())
    return json.loads(out.stdout.splitlines()[-1])


@pinnable
def test_pytest_runs_torch_numpy_and_onednn_at_avx2_on_one_thread():
    import numpy
    import torch
    from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__

    assert torch.backends.cpu.get_cpu_capability() == "AVX2"
    assert [f for f in __cpu_dispatch__ if __cpu_features__[f]] == ["X86_V3"], numpy.__version__
    assert torch.get_num_threads() == 1
    assert {k: os.environ.get(k) for k in arithmetic.PINNED} == arithmetic.PINNED
    # and what a child of this process reports, oneDNN included
    assert_pinned(run_report())


@pinnable
def test_a_notebook_kernel_started_as_nbval_starts_it_is_pinned():
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3")  # nbval's --nbval-current-env: this environment
    try:
        lines: list[str] = []
        kc.execute_interactive(REPORT, timeout=120, output_hook=lambda msg: lines.append(
            msg["content"].get("text", "")) if msg["msg_type"] == "stream" else None)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    import json

    assert_pinned(json.loads("".join(lines).splitlines()[-1]))


@pinnable
def test_the_runner_hands_its_kernels_the_pin_even_from_an_unpinned_caller(tmp_path):
    from sdprobe.book.runs import execute_notebook

    source = tmp_path / "probe.py"
    source.write_text("# %%\n" + REPORT)
    bare = {k: v for k, v in os.environ.items() if k not in arithmetic.PINNED and k != arithmetic.MODE_VARIABLE}
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(bare)
    try:
        out = execute_notebook(source, tmp_path / "probe.ipynb", progress_bar=False)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    import json

    import nbformat

    text = "".join(o.get("text", "") for o in nbformat.read(out, as_version=4).cells[0].outputs)
    assert_pinned(json.loads(text.splitlines()[-1]))


def test_native_arithmetic_removes_the_pin_and_an_unknown_mode_is_one_clear_error(monkeypatch):
    env = arithmetic.pinned_environment({**arithmetic.PINNED, "PATH": "/bin"}, arithmetic="native")
    assert env == {"PATH": "/bin", arithmetic.MODE_VARIABLE: "native"}
    with pytest.raises(ValueError, match="arithmetic must be one of avx2, native, not 'avx512'"):
        arithmetic.pinned_environment({}, arithmetic="avx512")
    monkeypatch.setenv(arithmetic.MODE_VARIABLE, "fast")
    with pytest.raises(ValueError, match="not 'fast'"):
        arithmetic.mode()


def test_a_thread_count_the_caller_chose_is_kept_and_otherwise_one(monkeypatch):
    monkeypatch.setattr(arithmetic, "unpinnable", lambda *a, **k: None)
    # the mode is given: under `make check ARITHMETIC=native` this process's own would lift the pin
    assert arithmetic.pinned_environment({}, arithmetic="avx2")["OMP_NUM_THREADS"] == "1"
    assert arithmetic.pinned_environment({"OMP_NUM_THREADS": "4"}, arithmetic="avx2")["OMP_NUM_THREADS"] == "4"


@pytest.mark.parametrize("machine, flags, why", [
    ("aarch64", None, "this machine is aarch64"),
    ("arm64", None, "this machine is arm64"),
    ("x86_64", {"sse2", "avx"}, "no AVX2 and FMA"),
    ("x86_64", {"sse2", "avx", "avx2", "fma"}, None),
    ("AMD64", {"avx2", "fma", "avx512f"}, None),
])
def test_machines_that_cannot_pin_are_named_with_the_reason(machine, flags, why):
    found = arithmetic.unpinnable(machine, flags)
    assert found is None if why is None else why in found


def test_where_the_pin_cannot_hold_children_run_natively(monkeypatch):
    monkeypatch.setattr(arithmetic, "unpinnable", lambda *a, **k: "this machine is aarch64")
    env = arithmetic.pinned_environment({"DNNL_MAX_CPU_ISA": "AVX2", "HOME": "/root"})
    assert "DNNL_MAX_CPU_ISA" not in env and env["HOME"] == "/root"


def test_on_a_machine_that_cannot_pin_nbval_skips_the_committed_outputs_in_one_line(tmp_path):
    """A run on aarch64 (faked) deselects the notebook cells, says why once and passes."""
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(2)", execution_count=1, outputs=[
        nbformat.v4.new_output("stream", name="stdout", text="1\n")])])
    nbformat.write(nb, tmp_path / "digits.ipynb")
    (tmp_path / "test_plain.py").write_text("def test_plain():\n    assert True\n")
    (tmp_path / "conftest.py").write_text((REPO_ROOT / "conftest.py").read_text())
    (tmp_path / "fake_arm.py").write_text("import sdprobe.arithmetic as a\n"
                                          "a.unpinnable = lambda *args, **kw: 'this machine is aarch64, not x86-64'\n")
    def pytest(*plugins: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "pytest", *plugins, "--nbval", "-p", "no:cacheprovider", "-q", str(tmp_path)]
        return subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path,
                              env={**os.environ, "PYTHONPATH": str(tmp_path)})

    faked = pytest("-p", "fake_arm")
    assert faked.returncode == 0, faked.stdout
    lines = [line for line in faked.stdout.splitlines() if line.startswith("nbval:")]
    assert lines == ["nbval: the committed outputs of 1 notebook(s) were not compared: this machine is aarch64, "
                     "not x86-64. They hold on x86-64 with AVX2; `make execute` rewrites them for this machine."]
    assert re.search(r"1 passed, 1 deselected", faked.stdout)
    real = pytest()
    assert real.returncode == 1 and "1 failed" in real.stdout  # here the cell is compared, and differs
