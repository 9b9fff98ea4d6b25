"""Where the project's shipped data lives.

`sdprobe` is installed editable from a checkout (``pip install -e .``); the data folder sits
beside ``lib/`` at the repository root. ``SDPROBE_DATA`` points elsewhere when needed.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = Path(os.environ.get("SDPROBE_DATA", REPO_ROOT / "data"))
CONFIGS_DIR = DATA_DIR / "configs"
PRESETS_DIR = DATA_DIR / "presets"
MODELS_DIR = DATA_DIR / "models"
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
