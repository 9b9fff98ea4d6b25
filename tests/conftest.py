"""Shared fixtures. The environment every test runs in (offline, quiet, pinned arithmetic) is set
by the repository's root conftest.py, before anything imports torch."""

from __future__ import annotations

import pytest
import torch

TINY_FAMILIES = ("sd1-tiny", "sd2-tiny", "sdxl-tiny")


@pytest.fixture(scope="session")
def pipes():
    """``pipes(name)``: the pipeline ``load_pipeline(name)`` gives on the CPU in fp32, built once for
    the whole session. Tests use them read-only, or put back what they change."""
    import sdprobe

    cache: dict[str, object] = {}

    def get(name: str):
        if name not in cache:
            cache[name] = sdprobe.load_pipeline(name, device="cpu", dtype="fp32")
            cache[name].set_progress_bar_config(disable=True)
        return cache[name]

    return get


@pytest.fixture(scope="session")
def tiny_pipes(pipes):
    """``tiny_pipes(family)``: :func:`pipes` of ``random:<family>`` for the tiny families."""
    return lambda family: pipes(f"random:{family}")


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator("cpu").manual_seed(seed)


def notebook_layout(tmp_path, source: str, presets: dict[str, str], name: str = "00_demo") -> dict:
    """A notebooks folder holding ``source`` as ``<name>.py`` and its presets (file stem → YAML):
    the keyword arguments of :func:`sdprobe.book.runs.run_batch` for a batch over them."""
    notebooks, folder = tmp_path / "notebooks", tmp_path / "presets" / name
    notebooks.mkdir()
    folder.mkdir(parents=True)
    (notebooks / f"{name}.py").write_text(source)
    for stem, text in presets.items():
        (folder / f"{stem}.yaml").write_text(text)
    return {"notebooks_dir": notebooks, "presets_dir": tmp_path / "presets", "out_dir": tmp_path / "runs"}
