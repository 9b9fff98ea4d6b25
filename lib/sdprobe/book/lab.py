"""The project's Jupyter kernel, for opening the chapters by hand (``make lab``).

``python -m sdprobe.book.lab PREFIX`` registers this Python as the kernel ``sdprobe`` under
``PREFIX`` (the virtual environment), with the environment every chapter is executed in: the
pinned arithmetic (:mod:`sdprobe.arithmetic`), one thread, and the Hugging Face Hub offline
unless ``ONLINE=1``. A cell run in JupyterLab then prints the digits the book prints.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["KERNEL_NAME", "install_kernel", "kernel_environment"]

#: The name the kernel is registered under (its display name says the project's).
KERNEL_NAME = "sdprobe"


def kernel_environment(online: bool = False) -> dict[str, str]:
    """The variables the kernel starts with (and only these, on top of Jupyter's own)."""
    from sdprobe.arithmetic import pinned_environment

    pinned = pinned_environment({}, os.environ.get("SDPROBE_ARITHMETIC"))
    offline = "0" if online else "1"
    return {**pinned, "HF_HUB_OFFLINE": offline, "TRANSFORMERS_OFFLINE": offline, "HF_HUB_DISABLE_TELEMETRY": "1",
            "PYTHONHASHSEED": "0"}


def install_kernel(prefix: Path | str, *, online: bool = False) -> Path:
    """Register this interpreter as the kernel :data:`KERNEL_NAME` under ``prefix``; returns the
    kernelspec's folder."""
    from ipykernel.kernelspec import install

    where = install(kernel_name=KERNEL_NAME, display_name="Inside Stable Diffusion (sdprobe)", prefix=str(prefix),
                    env=kernel_environment(online))
    return Path(where)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m sdprobe.book.lab PREFIX   (the virtual environment to register the kernel in)",
              file=sys.stderr)
        return 2
    where = install_kernel(args[0], online=os.environ.get("HF_HUB_OFFLINE") == "0")
    print(f"kernel {KERNEL_NAME!r} registered in {where}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
