"""One run in detail: its spec, status, summary, figures and artifacts (Panel ``RunDetail``)."""
from __future__ import annotations

import html
from typing import Any

import panel as pn
import param

from kdlab.runs.store import Store
from kdlab.ui.live import RunActions, empty_message


class RunDetail(RunActions, param.Parameterized):
    """Config, curves and artifacts of ``run_id``; cancel/resume offered while they apply."""

    run_id = param.String(default=None, allow_None=True)

    def __init__(self, store: Store, **params: Any):
        super().__init__(**params)
        self.store = store
        self.picker = pn.widgets.Select(name="run", options={}, width=420, css_classes=["kdlab-detail-run"])
        self.picker.link(self, value="run_id")
        self.header = pn.pane.Markdown("", css_classes=["kdlab-detail-header"])
        self.config = pn.pane.Markdown("", sizing_mode="stretch_width")
        self.plot = pn.pane.Plotly(sizing_mode="stretch_width", height=500, visible=False,
                                   config={"displaylogo": False}, css_classes=["kdlab-detail-plot"])
        self.empty = pn.pane.Alert("", alert_type="secondary", sizing_mode="stretch_width",
                                   css_classes=["kdlab-detail-empty"])
        self.artifacts = pn.pane.Markdown("")
        self._init_actions("detail-")
        self.body = pn.Row(pn.Column(self.config, self.artifacts, width=420), self.plot, sizing_mode="stretch_width")
        self.status: str | None = None
        self.refresh_options()
        self._show()

    def refresh_options(self) -> None:
        df = self.store.list_runs()
        self.picker.options = {f"{r['name']} · {r['status']} · {r['id']}": r["id"] for _, r in df.iterrows()}

    def open(self, run_id: str) -> None:
        """Show run ``run_id``."""
        if run_id not in self.picker.options.values():
            self.refresh_options()
        self.picker.value = run_id

    @param.depends("run_id", watch=True)
    def _show(self) -> None:
        from kdlab.viz import training_curves
        from kdlab.viz.theme import plotly_text

        self.message.visible = False
        if not self.run_id:
            self.status = None
            self.header.object = "### Run detail"
            self.config.object = self.artifacts.object = ""
            self.empty.object = ("Pick a run above to see its config, curves and artifacts." if self.picker.options
                                 else "No runs yet: launch one on the **Runs** page; it can be inspected here.")
            self.empty.visible, self.plot.visible, self.body.visible = True, False, False
            self._actions(None)
            return
        rec = self.store.get_run(self.run_id)
        self.status = rec.status
        summary = ", ".join(f"{k} = {v:.4g}" for k, v in (rec.summary or {}).items() if isinstance(v, (int, float)))
        err = f"\n\n**error**: {html.escape(rec.error)}" if rec.error else ""
        self.header.object = (f"### {html.escape(rec.name)}\n`{rec.id}` · **{rec.status}** · executor {rec.executor}"
                              f" · device {rec.device or '-'} · tags {', '.join(rec.tags) or '-'}\n\n"
                              f"{summary}{err}")
        import yaml

        self.config.object = "```yaml\n" + yaml.safe_dump(rec.spec, sort_keys=False) + "```"
        metrics = self.store.metrics(self.run_id)
        if len(metrics):
            fig = training_curves(metrics, title=f"{plotly_text(rec.name)} curves")
            self.plot.height = int(fig.layout.height or 500)  # the figure's own height: its rows never squeeze
            self.plot.object = fig
        else:
            self.empty.object = empty_message(rec.status)
        self.empty.visible, self.plot.visible, self.body.visible = not len(metrics), bool(len(metrics)), True
        self._actions(rec.status)
        names = self.store.artifacts(self.run_id)
        folder = self.store.run_dir(self.run_id)
        files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())[:50]
        self.artifacts.object = ("**artifacts**: " + (", ".join(f"`{n}`" for n in names) or "none") +
                                 f"\n\n**run folder** `{folder}`: " + (", ".join(f"`{f}`" for f in files) or "empty"))

    def tick(self) -> None:
        """Redraw when the shown run's status changed (the dashboard polls every second)."""
        if self.run_id and self.store.get_run(self.run_id).status != self.status:
            self._show()

    def _after_resume(self) -> None:
        self._show()

    def panel(self) -> pn.viewable.Viewable:
        return pn.Column(self.picker, self.header, pn.Row(self.cancel_button, self.resume_button), self.message,
                         self.empty, self.body, sizing_mode="stretch_width")

    def __panel__(self) -> pn.viewable.Viewable:
        return self.panel()
