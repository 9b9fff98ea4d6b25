"""A fixed picture to push through the forward process and the VAE in the explainer chapter."""

from __future__ import annotations

from PIL import Image

__all__ = ["demo_scene"]


def demo_scene(height: int = 128, width: int | None = None) -> Image.Image:
    """A white dog on the field, drawn by the toy world (its palette, its shapes), at any size.

    The scene is laid out at the world's 128 pixels and scaled with nearest-neighbour sampling,
    so its flat colours and hard edges survive at any size: the noise and the VAE's blur stay
    easy to see. Deterministic; it needs no weights and no download.
    """
    from sdprobe.world import make_scene

    scene = make_scene("field", [("white", "dog")], seed=1, caption="a white dog on the field")
    return scene.image().resize((width or height, height), Image.NEAREST)
