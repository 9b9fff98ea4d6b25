"""Shared fixtures. Tests run offline and quiet, whatever the caller's environment says."""

from __future__ import annotations

import os

# Read at import time by huggingface_hub and tqdm: set before anything imports them.
for _key, _value in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TQDM_DISABLE": "1",
    "SDPROBE_PROGRESS": "0",
    "PYTHONHASHSEED": "0",
}.items():
    os.environ.setdefault(_key, _value)

import pytest
import torch

TINY_FAMILIES = ("sd1-tiny", "sd2-tiny", "sdxl-tiny")


@pytest.fixture(scope="session")
def tiny_pipes():
    """One pipeline per tiny family, built once for the session (read-only use)."""
    import sdprobe

    cache: dict[str, object] = {}

    def get(family: str):
        if family not in cache:
            cache[family] = sdprobe.load_pipeline(f"random:{family}", device="cpu")
        return cache[family]

    return get


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator("cpu").manual_seed(seed)
