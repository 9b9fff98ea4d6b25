"""The package's shape: a light import, old names still reachable, one hook layer for every probe."""

from __future__ import annotations

import re
import subprocess
import sys

import sdprobe
from sdprobe.paths import REPO_ROOT

LIB = REPO_ROOT / "lib" / "sdprobe"


def test_import_sdprobe_loads_neither_matplotlib_nor_pandas_nor_ray():
    code = ("import sys, sdprobe, sdprobe.book.runs, sdprobe.book.cluster; "
            "print(sorted(m for m in ('matplotlib', 'pandas', 'papermill', 'ray') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_chapters_first_import_does_not_load_diffusers_or_torch():
    # Every chapter and batch run starts with sdprobe.book.notebook; the model stack loads on first use.
    code = ("import sys, sdprobe, sdprobe.book.notebook; "
            "print(sorted(m for m in ('diffusers', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_top_level_name_resolves_and_is_listed():
    for name in sdprobe.__all__:
        assert getattr(sdprobe, name) is not None, name
    assert set(sdprobe.__all__) <= set(dir(sdprobe))


def test_the_top_level_names_still_work():
    for name in ("load_pipeline", "trace_attention", "record_trajectory", "record_features", "swap_features",
                 "encode_prompts", "layer_map", "text_layers", "mask_figure", "SecondCallError"):
        assert callable(getattr(sdprobe, name)), name
    assert sdprobe.notebook.reproduction_report is sdprobe.book.notebook.reproduction_report
    assert sdprobe.metrics.mask_iou is sdprobe.analysis.metrics.mask_iou


def test_only_the_hook_layer_registers_hooks_processors_or_reads_private_pipeline_state():
    registering = re.compile(r"register_forward(_pre)?_hook\(|\.set_processor\(|_interrupt|_execution_device")
    offenders = [f"{path.relative_to(LIB)}:{n}" for path in (LIB / "probes").rglob("*.py") if path.name != "hooks.py"
                 for n, line in enumerate(path.read_text().splitlines(), 1) if registering.search(line)]
    assert offenders == []


def test_no_probe_patches_a_scheduler_or_pipeline_method():
    patching = re.compile(r"(scheduler\.step|\.__call__)\s*=(?!=)")
    offenders = [f"{path.relative_to(LIB)}:{n}" for path in LIB.rglob("*.py")
                 for n, line in enumerate(path.read_text().splitlines(), 1)
                 if patching.search(line) and not line.lstrip().startswith("#")]
    assert offenders == []
