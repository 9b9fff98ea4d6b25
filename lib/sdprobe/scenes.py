"""A fixed picture to push through the forward process and the VAE in the explainer chapter."""

from __future__ import annotations

from PIL import Image, ImageDraw

__all__ = ["demo_scene"]


def demo_scene(size: int = 128) -> Image.Image:
    """A dog-like shape running across a field under a sky, drawn with flat colours.

    Deterministic and drawn at any size (coordinates scale with ``size``); it needs no weights
    and no download, and its hard edges make the noise and the VAE's blur easy to see.
    """
    s = size / 128
    im = Image.new("RGB", (size, size), (135, 190, 235))
    d = ImageDraw.Draw(im)
    d.rectangle([0, int(78 * s), size, size], fill=(86, 160, 70))
    d.ellipse([int(92 * s), int(10 * s), int(118 * s), int(36 * s)], fill=(250, 215, 80))
    body = (120, 80, 45)
    d.ellipse([int(30 * s), int(62 * s), int(84 * s), int(88 * s)], fill=body)          # body
    d.ellipse([int(74 * s), int(50 * s), int(98 * s), int(72 * s)], fill=body)          # head
    d.polygon([(int(88 * s), int(50 * s)), (int(96 * s), int(40 * s)), (int(97 * s), int(56 * s))], fill=(90, 55, 30))  # ear
    for x0, x1 in ((34, 42), (46, 54), (62, 70), (72, 80)):                            # legs
        d.rectangle([int(x0 * s), int(82 * s), int(x1 * s), int(100 * s)], fill=body)
    d.line([(int(30 * s), int(70 * s)), (int(16 * s), int(58 * s))], fill=body, width=max(1, int(5 * s)))  # tail
    d.ellipse([int(90 * s), int(56 * s), int(94 * s), int(60 * s)], fill=(20, 20, 20))  # eye
    return im
