"""Every pytest run in this repository, whatever its arguments (``pytest notebooks/00_*.ipynb``
too), runs offline, quiet and on the pinned arithmetic of :mod:`sdprobe.arithmetic` (which says
why): set here, before anything loads NumPy or torch, and inherited by the notebook kernels
nbval starts. Where the pin cannot hold, the committed notebook outputs (x86-64's) are not
compared, and the run says so in one line."""

from __future__ import annotations

import os
import sys

# Read at import time by huggingface_hub and tqdm, and compared by nbval (a progress bar in
# stderr): set before anything imports them, whatever the caller's environment says.
for _key, _value in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TQDM_DISABLE": "1",
    "SDPROBE_PROGRESS": "0",
    "PYTHONHASHSEED": "0",
}.items():
    os.environ.setdefault(_key, _value)

from sdprobe import arithmetic  # noqa: E402  (imports neither NumPy nor torch)

_LOADED = sorted(m for m in ("numpy", "torch") if m in sys.modules)
if _LOADED:
    raise RuntimeError(f"{', '.join(_LOADED)} loaded before conftest.py could pin the arithmetic: a pytest plugin "
                       "imports it")
arithmetic.apply(os.environ)

import pytest  # noqa: E402

_UNPINNED = pytest.StashKey[str]()


def pytest_report_header(config) -> str:
    why = arithmetic.unpinnable()
    if why or arithmetic.mode() == "native":
        return f"arithmetic: native ({why or 'ARITHMETIC=native'}): committed outputs may differ in their last digits"
    return "arithmetic: pinned (" + ", ".join(f"{k}={v}" for k, v in arithmetic.PINNED.items()) + ")"


def pytest_collection_modifyitems(config, items) -> None:
    why = arithmetic.unpinnable()
    cells = [item for item in items if item.path.suffix == ".ipynb"]
    if why is None or not cells:
        return
    config.hook.pytest_deselected(items=cells)
    items[:] = [item for item in items if item.path.suffix != ".ipynb"]
    config.stash[_UNPINNED] = (
        f"nbval: the committed outputs of {len({c.path for c in cells})} notebook(s) were not compared: {why}. "
        "They hold on x86-64 with AVX2; `make execute` rewrites them for this machine.")


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if _UNPINNED in config.stash:
        terminalreporter.write_line(config.stash[_UNPINNED], yellow=True)
