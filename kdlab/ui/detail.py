"""One run in detail: its spec, status, summary, figures and artifacts (Panel ``RunDetail``)."""
from __future__ import annotations

import html
from typing import Any

import panel as pn
import param

from kdlab.runs.store import Store


class RunDetail(param.Parameterized):
    """Config, curves and artifacts of ``run_id``."""

    run_id = param.String(default=None, allow_None=True)

    def __init__(self, store: Store, **params: Any):
        super().__init__(**params)
        self.store = store
        self.picker = pn.widgets.Select(name="run", options={}, width=420, css_classes=["kdlab-detail-run"])
        self.picker.link(self, value="run_id")
        self.header = pn.pane.Markdown("", css_classes=["kdlab-detail-header"])
        self.config = pn.pane.Markdown("", sizing_mode="stretch_width")
        self.plot = pn.pane.Plotly(sizing_mode="stretch_width", height=500, config={"displaylogo": False})
        self.artifacts = pn.pane.Markdown("")
        self.refresh_options()
        self._show()

    def refresh_options(self) -> None:
        df = self.store.list_runs(refresh=False)
        self.picker.options = {f"{r['name']} · {r['status']} · {r['id']}": r["id"] for _, r in df.iterrows()}

    def open(self, run_id: str) -> None:
        """Show run ``run_id``."""
        if run_id not in self.picker.options.values():
            self.refresh_options()
        self.picker.value = run_id

    @param.depends("run_id", watch=True)
    def _show(self) -> None:
        from kdlab.viz import training_curves

        if not self.run_id:
            self.header.object = "pick a run"
            return
        rec = self.store.get_run(self.run_id, refresh=False)
        summary = ", ".join(f"{k} = {v:.4g}" for k, v in (rec.summary or {}).items() if isinstance(v, (int, float)))
        err = f"\n\n**error**: {html.escape(rec.error)}" if rec.error else ""
        self.header.object = (f"### {html.escape(rec.name)}\n`{rec.id}` · **{rec.status}** · executor {rec.executor}"
                              f" · device {rec.device or '-'} · tags {', '.join(rec.tags) or '-'}\n\n"
                              f"{summary}{err}")
        import yaml

        self.config.object = "```yaml\n" + yaml.safe_dump(rec.spec, sort_keys=False) + "```"
        self.plot.object = training_curves(self.store.metrics(self.run_id), title=f"{rec.name} curves")
        names = self.store.artifacts(self.run_id)
        folder = self.store.run_dir(self.run_id)
        files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())[:50]
        self.artifacts.object = ("**artifacts**: " + (", ".join(f"`{n}`" for n in names) or "none") +
                                 f"\n\n**run folder** `{folder}`: " + (", ".join(f"`{f}`" for f in files) or "empty"))

    def panel(self) -> pn.viewable.Viewable:
        return pn.Column(self.picker, self.header, pn.Row(pn.Column(self.config, self.artifacts, width=420),
                                                          self.plot, sizing_mode="stretch_width"),
                         sizing_mode="stretch_width")

    def __panel__(self) -> pn.viewable.Viewable:
        return self.panel()
