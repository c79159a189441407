"""The kdlab dashboard: ``panel serve dashboards/app.py`` (or ``kdlab serve`` / ``make serve``)."""
from kdlab.ui.dashboard import build_app

build_app().servable(title="kdlab")
