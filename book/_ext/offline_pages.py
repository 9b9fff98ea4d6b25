"""Keep the built pages self-contained and free of console errors.

sphinx-thebe registers its configuration script once per environment read; with Jupyter Book 1
pages can end up with the same ``const THEBE_JS_URL`` block twice, which browsers reject as a
redeclaration. Launching Thebe is off in this book, so duplicate script entries are dropped.
"""

from __future__ import annotations

from typing import Any

from docutils import nodes
from sphinx.util.nodes import make_refnode


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


def _resolve_short_python_name(app, env, node, contnode) -> nodes.reference | None:
    """Let a docstring name another module's object by its short name (``:func:`mask_iou```).

    Sphinx looks a short name up only in the current module; the library's docstrings refer across
    modules, so a name that matches exactly one documented object anywhere resolves to it.
    """
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"].lstrip("~.")
    domain = env.get_domain("py")
    matches = [(name, obj) for name, obj in domain.objects.items()
               if name == target or name.endswith("." + target) or name.endswith("." + target.split(".")[-1])
               and target.startswith("sdprobe.")]
    exact = [m for m in matches if m[0] == target or m[0].endswith("." + target)]
    matches = exact or matches
    if len(matches) != 1:
        return None
    name, obj = matches[0]
    return make_refnode(app.builder, node["refdoc"], obj.docname, obj.node_id, contnode, name)


def setup(app) -> dict[str, Any]:
    app.connect("html-page-context", _drop_duplicate_scripts, priority=900)
    app.connect("missing-reference", _resolve_short_python_name)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
