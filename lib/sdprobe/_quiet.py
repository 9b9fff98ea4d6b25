"""Silence one import-time notice that says nothing about our work.

transformers logs that torchvision is missing when diffusers imports its CLIP image processor;
torchvision has no CPU build on our machines and nothing here uses image processors. The notice
would otherwise land in every notebook's stderr, which nbval compares. Only that message is
dropped, only on the logger that emits it.
"""

from __future__ import annotations

import logging


class _DropTorchvisionNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "requires torchvision (not installed)" not in record.getMessage()


def install() -> None:
    # transformers logs through the standard logger of this name: filtering it here, before
    # transformers loads, keeps `import sdprobe` free of transformers, NumPy and torch
    logger = logging.getLogger("transformers.utils.import_utils")
    if not any(isinstance(f, _DropTorchvisionNotice) for f in logger.filters):
        logger.addFilter(_DropTorchvisionNotice())
