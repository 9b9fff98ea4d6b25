"""Keep the built pages self-contained and free of console errors.

sphinx-thebe registers its configuration script once per environment read; with Jupyter Book 1
pages can end up with the same ``const THEBE_JS_URL`` block twice, which browsers reject as a
redeclaration. Launching Thebe is off in this book, so duplicate script entries are dropped.
"""

from __future__ import annotations

from typing import Any


def _drop_duplicate_scripts(app, pagename: str, templatename: str, context: dict[str, Any], doctree) -> None:
    seen: set[tuple[str, str]] = set()
    unique = []
    for script in context.get("script_files", []):
        # Inline scripts come with a filename of None or "" depending on who added them.
        key = (str(getattr(script, "filename", script) or ""), str(getattr(script, "attributes", {}).get("body", "")))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def setup(app) -> dict[str, Any]:
    app.connect("html-page-context", _drop_duplicate_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
