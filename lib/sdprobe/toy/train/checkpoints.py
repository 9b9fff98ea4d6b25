"""Checkpoints, logs and the learning-rate schedule every stage shares: atomic saves, the JSON-lines log, warm-up then cosine decay."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch


def _save(path: Path, **state) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def _load(path: Path, device: str | torch.device = "cpu"):
    return torch.load(path, weights_only=False, map_location=device) if path.is_file() else None


def _log(work: Path, name: str, record: dict) -> None:
    with open(work / f"{name}.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")


def _lr(step: int, base: float, warmup: int, total: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to zero at ``total``."""
    if step < warmup:
        return base * (step + 1) / warmup
    return base * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))
