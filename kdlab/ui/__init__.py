"""Interactive components, one module per capability, each with a Panel and an ipywidgets face.

- ``forms``: form descriptions from the registries (shared by both launchers), validation messages;
- ``launcher``: ``Launcher`` (Panel) / ``LauncherWidget`` (ipywidgets);
- ``live``: ``CurvePoller`` (incremental store polling), ``LiveCurves`` (Panel), ``RunMonitor`` (ipywidgets);
- ``runs``: ``RunsTable`` (Panel), ``RunPicker`` (ipywidgets);
- ``compare``: ``ComparePage``, ``ReportExporter``; ``detail``: ``RunDetail``;
- ``pages``: ``register_page(name, builder)``; ``dashboard``: ``build_app()``, ``serve()``;
- ``widgets``: the notebook names ``Launcher``, ``RunMonitor``, ``RunPicker``.

Submodules import Panel/ipywidgets; names are loaded on first use so ``import kdlab.ui`` stays cheap.
"""
from __future__ import annotations

import importlib
from typing import Any

from kdlab.ui.pages import PAGES, register_page

_LAZY = {
    "Launcher": "kdlab.ui.launcher", "LauncherWidget": "kdlab.ui.launcher", "LiveCurves": "kdlab.ui.live",
    "CurvePoller": "kdlab.ui.live", "RunMonitor": "kdlab.ui.live", "RunsTable": "kdlab.ui.runs",
    "RunPicker": "kdlab.ui.runs", "ComparePage": "kdlab.ui.compare", "ReportExporter": "kdlab.ui.compare",
    "RunDetail": "kdlab.ui.detail", "Dashboard": "kdlab.ui.dashboard", "build_app": "kdlab.ui.dashboard",
    "serve": "kdlab.ui.dashboard",
}

__all__ = ["PAGES", "register_page", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'kdlab.ui' has no attribute {name!r}")
