"""The notebook face of the UI components (ipywidgets): ``Launcher``, ``RunMonitor``, ``RunPicker``."""
from __future__ import annotations

from kdlab.ui.launcher import LauncherWidget as Launcher
from kdlab.ui.live import RunMonitor
from kdlab.ui.runs import RunPicker

__all__ = ["Launcher", "RunMonitor", "RunPicker"]
