"""Pinned CPU arithmetic: the same digits from the same seeds on any x86-64 processor.

torch (ATen's vectorised kernels), oneDNN (convolutions), MKL (matrix products) and NumPy (its
ufuncs) each choose the widest vector instructions the processor offers, and kernels of other
widths add in another order: an AVX-512 machine prints other last digits than an AVX2 machine,
and committed notebook outputs would hold on one kind of processor only. :data:`PINNED` caps all
four at AVX2, which every x86-64 processor of the last decade has (Intel since 2013, AMD since
2015), and keeps one torch thread, because a parallel sum splits by thread count. The variables
are read when each library loads, so they are set in the environment a process *starts* with:
the notebook runner gives them to every kernel it starts (:mod:`sdprobe.book.runs`), and
``tests/conftest.py`` sets them before anything imports NumPy or torch, so pytest and the
kernels nbval starts inherit them. ``make`` passes ``ARITHMETIC=native`` through as
:data:`MODE_VARIABLE` to lift the pin.

OpenBLAS, which NumPy and SciPy carry, also picks kernels by processor; it is left as the
machine sets it (``OPENBLAS_CORETYPE``), and the library keeps its numbers off NumPy's matrix
products (torch computes them) so nothing printed depends on it.

Where the pin cannot hold (aarch64, Apple silicon, an x86-64 processor without AVX2),
:func:`unpinnable` says why; the runner then runs unpinned and nbval skips the committed outputs,
which are x86-64's.

This module imports nothing heavy, so it runs before NumPy and torch are loaded.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping, MutableMapping
from pathlib import Path

__all__ = ["MODE_VARIABLE", "MODES", "PINNED", "apply", "mode", "pinned_environment", "unpinnable"]

#: The environment of a pinned process. oneDNN's variable is set in both spellings, because its
#: newer name wins where both are set and a stray one in the caller's environment would undo the cap.
PINNED: dict[str, str] = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "DNNL_MAX_CPU_ISA": "AVX2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_CBWR": "AVX2",
    # NumPy >= 2.4 dispatches to X86_V3 (AVX2, FMA) and, above it, these three
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
}
#: Threads for a pinned process, unless the caller chose a number (then the digits follow that choice).
THREADS = {"OMP_NUM_THREADS": "1"}

#: ``avx2`` pins (the default everywhere outputs are written or compared); ``native`` lets every
#: library use the processor's widest instructions (faster, other last digits on other machines).
MODES = ("avx2", "native")
#: The environment variable that chooses between :data:`MODES` (``make`` sets it from ``ARITHMETIC``).
MODE_VARIABLE = "SDPROBE_ARITHMETIC"

_X86 = {"x86_64", "amd64", "x64"}


def mode(value: str | None = None) -> str:
    """The arithmetic asked for: ``value``, else ``$SDPROBE_ARITHMETIC``, else ``avx2``.

    Raises:
        ValueError: not one of :data:`MODES`.
    """
    chosen = (value if value is not None else os.environ.get(MODE_VARIABLE, "")).strip().lower() or MODES[0]
    if chosen not in MODES:
        raise ValueError(f"arithmetic must be one of {', '.join(MODES)}, not {chosen!r}")
    return chosen


def unpinnable(machine: str | None = None, cpu_flags: set[str] | None = None) -> str | None:
    """Why this machine cannot run the pinned arithmetic, or None when it can.

    ``machine`` and ``cpu_flags`` default to this machine's (``platform.machine()`` and the
    ``flags`` of ``/proc/cpuinfo`` where there is one).
    """
    machine = (machine or platform.machine()).lower()
    if machine not in _X86:
        return f"this machine is {machine}, and the pinned arithmetic is x86-64's (AVX2)"
    flags = _cpu_flags() if cpu_flags is None else cpu_flags
    if flags is not None and not {"avx2", "fma"} <= flags:
        return "this x86-64 processor has no AVX2 and FMA, which the pinned arithmetic uses"
    return None


def pinned_environment(base: Mapping[str, str] | None = None, arithmetic: str | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with the pin applied, as a new dict.

    With ``arithmetic="native"``, or where :func:`unpinnable` says the pin cannot hold, the pin's
    variables are removed instead, so a child process runs natively and says so.
    """
    env = dict(os.environ if base is None else base)
    apply(env, arithmetic)
    return env


def apply(env: MutableMapping[str, str], arithmetic: str | None = None) -> bool:
    """Pin ``env`` in place (see :func:`pinned_environment`); True when the pin was applied."""
    chosen = mode(arithmetic if arithmetic is not None else env.get(MODE_VARIABLE))
    env[MODE_VARIABLE] = chosen
    if chosen == "native" or unpinnable() is not None:
        for key in PINNED:
            env.pop(key, None)
        return False
    env.update(PINNED)
    for key, value in THREADS.items():
        env.setdefault(key, value)
    return True


def _cpu_flags() -> set[str] | None:
    cpuinfo = Path("/proc/cpuinfo")
    try:
        text = cpuinfo.read_text()
    except OSError:
        return None  # not Linux: trust an x86-64 machine to have AVX2 (the pin's test says if not)
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return None
