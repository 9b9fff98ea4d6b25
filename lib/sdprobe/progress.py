"""Progress bars: on for people, off for CI and for committed notebook outputs.

Bars are written to stderr, which nbval compares, so executed outputs must never hold one.
``SDPROBE_PROGRESS=0`` (or tqdm's own ``TQDM_DISABLE=1``) turns them off everywhere.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress_enabled() -> bool:
    """True unless the environment asks for quiet runs."""
    if os.environ.get("SDPROBE_PROGRESS", "1").strip().lower() in {"0", "false", "no", "off"}:
        return False
    return os.environ.get("TQDM_DISABLE", "0").strip().lower() not in {"1", "true", "yes", "on"}


def progress(iterable: Iterable[T], **kwargs) -> Iterator[T]:
    """``tqdm`` over ``iterable`` that honours :func:`progress_enabled`."""
    return iter(tqdm(iterable, disable=not progress_enabled(), **kwargs))


def progress_bar(**kwargs) -> tqdm:
    """A manual ``tqdm`` bar (``update``, ``total`` may change) that honours :func:`progress_enabled`."""
    return tqdm(disable=not progress_enabled(), **kwargs)


def configure_pipeline_progress(pipe) -> None:
    """Apply the progress setting to a diffusers pipeline's own denoising bar."""
    pipe.set_progress_bar_config(disable=not progress_enabled())
