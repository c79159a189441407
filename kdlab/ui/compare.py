"""Compare runs: overlaid curves (``kdlab.viz.compare_runs``), a final-metrics table and report export.

``ReportExporter`` builds ``kdlab.report.build`` in a thread pool (never on the server's loop) and reports
progress; ``ComparePage`` is the Panel face.
"""
from __future__ import annotations

import concurrent.futures as cf
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import panel as pn
import param

from kdlab.runs.store import Store

_POOL = cf.ThreadPoolExecutor(max_workers=2, thread_name_prefix="kdlab-report")
KEYS = ["val/acc", "val/loss", "train/acc", "train/loss", "test/acc"]


class ReportExporter:
    """One report build at a time per exporter: ``start(run_ids)`` -> Future; ``progress`` (0..1), ``stage``."""

    def __init__(self, store: Store):
        self.store = store
        self.future: cf.Future | None = None
        self.progress, self.stage, self.path = 0.0, "idle", None
        self._lock = threading.Lock()

    def default_path(self) -> Path:
        """A new file in the store's ``reports`` folder (created here: it is the store's own)."""
        folder = self.store.root / "reports"
        folder.mkdir(exist_ok=True)
        return folder / f"kdlab-report-{time.strftime('%Y%m%d-%H%M%S')}.html"

    def _build(self, run_ids: list[str], path: Path, title: str) -> Path:
        from kdlab.report import build, run_from_store

        runs = []
        for i, rid in enumerate(run_ids):
            self.stage = f"loading run {i + 1}/{len(run_ids)}"
            runs.append(run_from_store(self.store, rid))
            self.progress = 0.6 * (i + 1) / len(run_ids)
        self.stage = "rendering figures"
        build(runs, path, title=title)
        self.progress, self.stage, self.path = 1.0, "done", path
        return path

    def start(self, run_ids: Sequence[str], path: str | Path | None = None, title: str = "kdlab report") -> cf.Future:
        """Start building the report of ``run_ids`` (in a worker thread); returns the Future of its path."""
        ids = list(run_ids)
        if not ids:
            raise ValueError("select at least one run to export a report")
        with self._lock:
            if self.future is not None and not self.future.done():
                return self.future
            self.progress, self.stage, self.path = 0.0, "queued", None
            self.future = _POOL.submit(self._build, ids, Path(path) if path else self.default_path(), title)
            return self.future

    @property
    def running(self) -> bool:
        return self.future is not None and not self.future.done()


def final_table(store: Store, run_ids: Sequence[str]) -> pd.DataFrame:
    """One row per run: name, method, student, status, last val/acc, test/acc."""
    df = store.list_runs().set_index("id")
    rows = []
    for rid in run_ids:
        if rid not in df.index:
            continue
        r = df.loc[rid]
        h = store.history(rid)
        last = h.iloc[-1] if len(h) else pd.Series(dtype=float)
        rows.append({"id": rid, "name": r["name"], "method": r["method"], "student": r["student"],
                     "status": r["status"], "epochs": int(r["epoch"]),
                     "val/acc": last.get("val/acc"), "val/loss": last.get("val/loss"), "test/acc": r["test_acc"]})
    return pd.DataFrame(rows, columns=["id", "name", "method", "student", "status", "epochs", "val/acc", "val/loss",
                                       "test/acc"])


def overlay(store: Store, run_ids: Sequence[str], key: str = "val/acc") -> Any:
    """``compare_runs`` of the runs' epoch metrics (labels: run names, made unique)."""
    from kdlab.viz import compare_runs

    names = store.list_runs().set_index("id")["name"].to_dict()
    runs: dict[str, Any] = {}
    for rid in run_ids:
        label = str(names.get(rid, rid))
        if label in runs:
            label = f"{label} ({rid[:6]})"
        runs[label] = store.metrics(rid, kind="epoch")
    return compare_runs(runs, key=key)


class ComparePage(param.Parameterized):
    """Select runs, overlay a metric, see the final table, export a report (a download)."""

    runs = param.ListSelector(default=[], objects=[], doc="ids of the compared runs")
    key = param.Selector(default="val/acc", objects=KEYS)

    def __init__(self, store: Store, **params: Any):
        super().__init__(**params)
        self.store = store
        self.exporter = ReportExporter(store)
        self.picker = pn.widgets.MultiChoice(name="runs", options={}, sizing_mode="stretch_width",
                                             css_classes=["kdlab-compare-runs"])
        self.picker.link(self, value="runs")
        self.key_select = pn.widgets.Select.from_param(self.param.key, width=160)
        self.plot = pn.pane.Plotly(sizing_mode="stretch_width", height=440, visible=False,
                                   config={"displaylogo": False}, css_classes=["kdlab-compare-plot"])
        self.empty = pn.pane.Alert("", alert_type="secondary", sizing_mode="stretch_width",
                                   css_classes=["kdlab-compare-empty"])
        self.table = pn.widgets.Tabulator(final_table(store, []), show_index=False, disabled=True,
                                          sizing_mode="stretch_width")
        self.export_button = pn.widgets.Button(name="Export report", button_type="primary",
                                               css_classes=["kdlab-export"])
        self.export_button.on_click(lambda _e: self.export())
        self.progress = pn.indicators.Progress(value=0, max=100, width=200, visible=False)
        self.export_status = pn.pane.Markdown("", css_classes=["kdlab-export-status"])
        self.download = pn.widgets.FileDownload(label="Download report", button_type="success", visible=False,
                                                css_classes=["kdlab-download"])
        self.refresh_options()
        self._draw()

    def refresh_options(self) -> None:
        df = self.store.list_runs()
        opts = {f"{r['name']} · {r['status']} · {r['id']}": r["id"] for _, r in df.iterrows()}
        self.param.runs.objects = list(opts.values())
        self.picker.options = opts
        if not self.runs and hasattr(self, "empty"):  # the empty state names what to do with the runs there are now
            self._draw()

    def compare(self, run_ids: Sequence[str], key: str | None = None) -> None:
        """Compare these runs (as picking them)."""
        known = set(self.param.runs.objects)
        if not set(run_ids) <= known:
            self.refresh_options()
        if key:
            self.key = key
        self.picker.value = list(run_ids)

    @param.depends("runs", "key", watch=True)
    def _draw(self) -> None:
        """The overlay of the picked runs, or what to do while there is nothing to draw."""
        self.table.value = final_table(self.store, self.runs)
        self.table.visible = bool(self.runs)
        fig = overlay(self.store, self.runs, self.key) if self.runs else None
        if fig is not None and fig.data:
            self.plot.height = int(fig.layout.height or 440)
            self.plot.object = fig
        elif not self.param.runs.objects:
            self.empty.object = "No runs yet: launch one on the **Runs** page, then pick runs here to compare them."
        elif not self.runs:
            self.empty.object = "Pick runs in the box above to overlay their curves and export a report."
        else:
            self.empty.object = f"None of the picked runs logged **{self.key}** yet: pick another metric or other runs."
        shown = fig is not None and bool(fig.data)
        self.plot.visible, self.empty.visible = shown, not shown
        if not self.exporter.running:
            self.export_button.disabled = not self.runs  # nothing to export until runs are picked

    def export(self, path: str | Path | None = None) -> cf.Future | None:
        """Build the report of the compared runs in a thread; the download appears when it is done."""
        if not self.runs:
            self.export_status.object = "select runs to export"
            return None
        fut = self.exporter.start(self.runs, path)
        self.export_button.disabled, self.progress.visible, self.download.visible = True, True, False
        self.tick()
        return fut

    def tick(self) -> None:
        """Show the export's progress; offer the download when it finished."""
        ex = self.exporter
        if ex.future is None:
            return
        self.progress.value = int(100 * ex.progress)
        if not ex.future.done():
            self.export_status.object = f"building report: {ex.stage}"
            return
        if self.progress.visible:  # first tick after it finished
            self.export_button.disabled, self.progress.visible = not self.runs, False
            err = ex.future.exception()
            if err is not None:
                self.export_status.object = f"report failed: {err}"
            else:
                path = ex.future.result()
                self.download.file, self.download.filename = str(path), path.name
                self.download.visible = True
                self.export_status.object = f"report ready: `{path}`"

    def panel(self) -> pn.viewable.Viewable:
        return pn.Column(pn.Row(self.picker, self.key_select), self.empty, self.plot, self.table,
                         pn.Row(self.export_button, self.progress, self.download), self.export_status,
                         sizing_mode="stretch_width")

    def __panel__(self) -> pn.viewable.Viewable:
        return self.panel()
