"""Give every notebook figure its alt text: the title its ``BookFigure`` carries.

A chapter's figures travel as PNG outputs whose metadata holds ``{"image/png": {"alt": ...}}``
(:class:`sdprobe.book.plots.figure.BookFigure`). myst-nb reads only ``width`` and ``height``
from there, and names each picture by the SHA-256 of its bytes. On reading a notebook page, this
extension maps those names to the alt texts of the same notebook's outputs and sets them on the
page's image nodes, so a screen reader hears "Fig. 3 — …", not a file name.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import nbformat
from docutils import nodes


def _alt_texts(notebook: Path) -> dict[str, str]:
    """``{sha256 of the picture's bytes: alt text}`` for every figure output of ``notebook``."""
    found: dict[str, str] = {}
    for cell in nbformat.read(str(notebook), as_version=4).cells:
        for output in cell.get("outputs", []):
            for mime in ("image/png", "image/jpeg"):
                alt = output.get("metadata", {}).get(mime, {}).get("alt")
                if alt and mime in output.get("data", {}):
                    found[hashlib.sha256(base64.b64decode(output["data"][mime])).hexdigest()] = str(alt)
    return found


def _set_alt(app, doctree: nodes.document) -> None:
    source = Path(app.env.doc2path(app.env.docname))
    if source.suffix != ".ipynb":
        return
    alts = _alt_texts(source)
    for image in doctree.findall(nodes.image):
        digest = Path(str(image.get("uri", ""))).stem
        if digest in alts:
            image["alt"] = alts[digest]


def setup(app):
    app.connect("doctree-read", _set_alt)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
