"""The runs of the store: a filterable table (Panel ``RunsTable``) and a picker (ipywidgets ``RunPicker``).

Both read ``store.list_runs`` (the store is the only state); filters are by status, tag and text.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd
import panel as pn
import param

from kdlab.runs.scheduler import refresh
from kdlab.runs.store import STATUSES, Store

COLUMNS = ["id", "name", "status", "epoch", "method", "test_acc", "created", "tags", "models", "data"]
# the runs table shares its row with the live curves (about 600 px at a 1280 px wide window): short forms,
# most telling columns first; columns that do not fit are left out whole from the right (never cut), the run
# detail page shows everything. The id stays in the table's value (selection, clicks) but is not shown.
HIDDEN = ["id"]
TABLE_HEIGHT, EMPTY_HEIGHT = 470, 44  # px: 15 rows and the pager; the header alone
TITLES = {"name": "run", "epoch": "epoch", "models": "teacher → student", "test_acc": "test acc"}


def filter_runs(df: pd.DataFrame, status: Sequence[str] = (), tag: str = "", text: str = "") -> pd.DataFrame:
    """Rows of ``store.list_runs()`` with one of ``status`` (all when empty), tag ``tag`` and ``text`` in the
    id, name or method."""
    out = df
    if status:
        out = out[out["status"].isin(list(status))]
    if tag:
        out = out[out["tags"].map(lambda ts: tag in (ts or []))]
    if text:
        t = text.lower()
        hay = out["id"].astype(str) + " " + out["name"].astype(str) + " " + out["method"].astype(str)
        out = out[hay.str.lower().str.contains(t, regex=False)]
    return out


def _text(v: Any) -> str:
    return "" if v is None or (isinstance(v, float) and pd.isna(v)) else str(v)


def _progress(epoch: Any, epochs: Any) -> str:
    done = "" if epoch is None or pd.isna(epoch) else f"{float(epoch):g}"
    total = "" if epochs is None or pd.isna(epochs) else f"{int(epochs)}"
    return f"{done or 0}/{total}" if total else done


def table_frame(df: pd.DataFrame) -> pd.DataFrame:
    """The runs table as shown: ``COLUMNS`` (epoch as ``done/total``, teacher → student, tags joined, test
    accuracy rounded, creation time to the minute)."""
    full = df.reindex(columns=[*COLUMNS, "epochs", "teacher", "student"])
    out = full.reindex(columns=COLUMNS).copy()
    out["epoch"] = [_progress(e, n) for e, n in zip(full["epoch"], full["epochs"], strict=True)]
    out["models"] = [" → ".join(x for x in (_text(t), _text(s)) if x)
                     for t, s in zip(full["teacher"], full["student"], strict=True)]
    out["test_acc"] = pd.to_numeric(full["test_acc"], errors="coerce").round(4)
    out["tags"] = out["tags"].map(lambda ts: ", ".join(ts) if isinstance(ts, list) else "")
    out["created"] = out["created"].map(lambda t: t.strftime("%m-%d %H:%M") if pd.notna(t) else "")
    # fixed column types, also for no runs: the table picks each column's formatter from the first frame it
    # shows (an empty store's all-NaN columns would format later runs' text as numbers and dates)
    for c in COLUMNS:
        if c != "test_acc":
            out[c] = out[c].map(_text).astype(object)
    out["test_acc"] = out["test_acc"].astype("float64")
    return out.reset_index(drop=True)


class RunsTable(param.Parameterized):
    """Runs of the store with filters; ``selected`` holds the ids of the selected rows."""

    status_filter = param.ListSelector(default=[], objects=list(STATUSES))
    tag_filter = param.String(default="")
    text_filter = param.String(default="")
    selected = param.List(default=[], doc="ids of the selected runs")

    def __init__(self, store: Store, on_open: Callable[[str], None] | None = None, **params: Any):
        super().__init__(**params)
        self.store, self.on_open = store, on_open
        self.all = store.list_runs()
        self.table = pn.widgets.Tabulator(table_frame(self.all), selectable="checkbox", pagination="remote",
                                          page_size=15, show_index=False, disabled=True, height=TABLE_HEIGHT,
                                          layout="fit_data_stretch", hidden_columns=HIDDEN, titles=TITLES,
                                          configuration={"responsiveLayout": "hide"},
                                          sizing_mode="stretch_width", css_classes=["kdlab-runs-table"])
        self.table.param.watch(self._selection, "selection")
        self.table.on_click(self._clicked)
        self.empty = pn.pane.Alert("", alert_type="secondary", visible=False, sizing_mode="stretch_width",
                                   css_classes=["kdlab-runs-empty"])
        # the filters wrap inside the table's column (the live curves sit to its right)
        self.filters = pn.FlexBox(
            pn.widgets.MultiChoice.from_param(self.param.status_filter, name="Status", placeholder="any status",
                                              sizing_mode="stretch_width", min_width=200, max_width=360),
            pn.widgets.TextInput.from_param(self.param.tag_filter, name="Tag", placeholder="any tag", width=140),
            pn.widgets.TextInput.from_param(self.param.text_filter, name="Search", placeholder="id, name or method",
                                            width=200),
            sizing_mode="stretch_width", css_classes=["kdlab-runs-filters"])
        self.tag_input = pn.widgets.TextInput(placeholder="tag", width=120)
        self.tag_add = pn.widgets.Button(name="Tag selected", width=110)
        self.tag_add.on_click(lambda _e: self.tag(self.tag_input.value))
        self.tag_row = pn.Row(self.tag_input, self.tag_add)
        self._update(force=True)

    @param.depends("status_filter", "tag_filter", "text_filter", watch=True)
    def _refilter(self) -> None:
        self._update(force=True)

    def frame(self) -> pd.DataFrame:
        """The filtered runs (full ``list_runs`` columns)."""
        return filter_runs(self.all, self.status_filter, self.tag_filter.strip(), self.text_filter.strip())

    def _update(self, force: bool = False) -> None:
        shown = table_frame(self.frame())
        if force or not shown.equals(self.table.value):
            keep = [i for i, rid in enumerate(shown["id"]) if rid in self.selected]
            self.table.value = shown
            self.table.selection = keep
        if not len(self.all):
            self.empty.object = "No runs yet: launch one with **Launch a run** above; it is listed here."
        elif not len(shown):
            self.empty.object = "No run matches these filters: clear them to see all runs."
        self.empty.visible = not len(shown)
        # an empty table shrinks to its header (hiding it instead would leave it blank when rows arrive: the
        # grid measures its columns only while shown)
        height = TABLE_HEIGHT if len(shown) else EMPTY_HEIGHT
        if self.table.height != height:
            self.table.height = height
        self.tag_row.visible = bool(len(self.all))

    def refresh(self, reap: bool = True) -> None:
        """Re-read the store (``reap``: notice dead workers and start queued runs first)."""
        if reap:
            refresh(self.store)
        self.all = self.store.list_runs()
        self._update()

    def tick(self) -> None:
        self.refresh(reap=False)

    def _selection(self, event: Any) -> None:
        df = self.table.value
        self.selected = [df["id"].iloc[i] for i in event.new if i < len(df)]

    def _clicked(self, event: Any) -> None:
        df = self.table.value
        if self.on_open is not None and event.row is not None and event.row < len(df):
            self.on_open(str(df["id"].iloc[event.row]))

    def select(self, run_ids: Sequence[str]) -> None:
        """Select these runs (as ticking their boxes)."""
        df = self.table.value
        self.table.selection = [i for i, rid in enumerate(df["id"]) if rid in set(run_ids)]

    def tag(self, tag: str, run_ids: Sequence[str] | None = None) -> None:
        """Add ``tag`` to the selected runs (or ``run_ids``)."""
        tag = str(tag).strip()
        if not tag:
            return
        for rid in run_ids if run_ids is not None else self.selected:
            self.store.tag_run(rid, tag)
        self.refresh(reap=False)

    def panel(self) -> pn.viewable.Viewable:
        return pn.Column(self.filters, self.empty, self.table, self.tag_row, sizing_mode="stretch_width")

    def __panel__(self) -> pn.viewable.Viewable:
        return self.panel()


def run_label(row: Any) -> str:
    return f"{row['name']} · {row['status']} · {row['id']}"


class RunPicker:
    """ipywidgets run picker: a multi-select of the store's runs; ``value`` is the list of chosen ids."""

    def __init__(self, store: Store | None = None, status: Sequence[str] = (), multiple: bool = True):
        import ipywidgets as w

        from kdlab.runs.store import open_store

        self.store = store or open_store()
        self.status = tuple(status)
        cls = w.SelectMultiple if multiple else w.Dropdown
        self.select = cls(options=[], description="runs", layout=w.Layout(width="520px"))
        self.refresh_button = w.Button(description="Refresh", icon="refresh")
        self.refresh_button.on_click(lambda _b: self.refresh())
        self.widget = w.HBox([self.select, self.refresh_button])
        self.refresh()

    def refresh(self) -> None:
        df = filter_runs(self.store.list_runs(), self.status)
        self.select.options = [(run_label(r), r["id"]) for _, r in df.iterrows()]

    @property
    def value(self) -> list[str]:
        v = self.select.value
        return list(v) if isinstance(v, (list, tuple)) else ([v] if v else [])

    @value.setter
    def value(self, ids: Sequence[str]) -> None:
        self.select.value = tuple(ids) if isinstance(self.select.value, tuple) else (ids[0] if ids else None)

    def _repr_mimebundle_(self, **kw: Any) -> Any:
        return self.widget._repr_mimebundle_(**kw)
