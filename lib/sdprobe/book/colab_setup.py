"""Set the project up inside Google Colab: ``python lib/sdprobe/book/colab_setup.py`` from a clone.

Run by the first cell of every chapter, and only inside Colab. Colab brings its own CUDA build
of torch, so the project's dependencies are installed without the torch pin of
``pyproject.toml``, then the project itself without dependencies.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def requirements() -> list[str]:
    """``pyproject.toml``'s runtime dependencies, torch left to the runtime."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [req for req in project["dependencies"] if not req.replace(" ", "").startswith("torch")]


def main() -> None:
    pip = [sys.executable, "-m", "pip", "install", "-q"]
    subprocess.run(pip + requirements(), check=True)
    subprocess.run(pip + ["--no-deps", "-e", str(ROOT)], check=True)


if __name__ == "__main__":
    main()
