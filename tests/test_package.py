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
                 "encode_prompts", "layer_map", "text_layers", "SecondCallError"):
        assert callable(getattr(sdprobe, name)), name


def test_the_rooms_are_attributes_of_the_package_and_plotting_is_not():
    for room in ("models", "world", "analysis", "probes", "experiments", "book", "toy"):
        assert getattr(sdprobe, room).__name__ == f"sdprobe.{room}"
    for gone in ("mask_figure", "plots", "notebook"):  # figures and tables stay in sdprobe.book
        assert not hasattr(sdprobe, gone), gone


HOOKING = re.compile(r"register_forward(_pre)?_hook\(|\.set_(attn_)?processor\(|_interrupt|_execution_device")


def hooking_lines(root) -> list[str]:
    """Lines outside probes/hooks.py that register a hook or processor or read private pipeline state
    (names quoted in a docstring's double backticks do neither)."""
    return [f"{path.relative_to(root)}:{n}" for path in root.rglob("*.py") if path.relative_to(root).as_posix() != "probes/hooks.py"
            for n, line in enumerate(path.read_text().splitlines(), 1)
            if HOOKING.search(re.sub(r"``[^`]*``", "", line)) and not line.lstrip().startswith("#")]  # prose names it in ``


def test_only_the_hook_layer_registers_hooks_processors_or_reads_private_pipeline_state():
    assert hooking_lines(LIB) == []


def test_the_hook_rule_sees_set_attn_processor_anywhere_in_the_library(tmp_path):
    (tmp_path / "probes").mkdir()
    (tmp_path / "probes" / "hooks.py").write_text("unet.set_attn_processor(p)\n")  # the hook layer may
    (tmp_path / "toy.py").write_text("x = 1\nunet.set_attn_processor(before)\n")
    assert hooking_lines(tmp_path) == ["toy.py:2"]


def test_no_probe_patches_a_scheduler_or_pipeline_method():
    patching = re.compile(r"(scheduler\.step|\.__call__)\s*=(?!=)")
    offenders = [f"{path.relative_to(LIB)}:{n}" for path in LIB.rglob("*.py")
                 for n, line in enumerate(path.read_text().splitlines(), 1)
                 if patching.search(line) and not line.lstrip().startswith("#")]
    assert offenders == []
