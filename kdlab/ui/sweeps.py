"""Sweeps: launch a hyper-parameter sweep (a background ``sweep`` job whose trials are training runs) and follow it:
its trials table, counts, best so far, the best spec as YAML, the figures of ``kdlab.viz.sweeps`` redrawn as trials
report, and "try these first" advice from earlier sweeps. ``Sweeps`` is the one component: ``panel()`` is the
dashboard page **Sweeps**, ``widget()`` the notebook's ``SweepWidget``. Both read the job's ``sweep.json`` (through
``read_sweep``) and hold nothing of their own; every button is also a method (``launch``, ``open``, ``advise``)."""
from __future__ import annotations

import html
import os
import time
from collections.abc import Mapping
from typing import Any

import pandas as pd
import panel as pn
import param

from kdlab.errors import ConfigError
from kdlab.runs.background import RunHandle
from kdlab.runs.store import TERMINAL, Store, open_store
from kdlab.sweeps.result import SWEEP_FILE, SweepResult, read_sweep
from kdlab.ui.pages import register_component_page
from kdlab.ui.task_widget import TaskWidget, show
from kdlab.viz.theme import GAP

KIND = "sweep"
FIGURES = ("trials", "curves", "parallel", "importances")
#: what the launch form starts from: a tiny sweep (digits, MLPs, three epochs) whose trials train in about a second
DEFAULT_SPEC = {"name": "sweep", "seed": 0, "device": "cpu", "data": {"name": "digits"},
                "teacher": {"name": "mlp", "params": {"width": 32}, "optim": {"epochs": 2, "batch_size": 32}},
                "student": {"name": "mlp", "params": {"width": 16}}, "method": {"name": "kd"},
                "optim": {"epochs": 3, "batch_size": 32}}
DEFAULT_SPACE = {"method.name": ["kd", "dkd"], "optim.lr": {"low": 0.01, "high": 0.1, "log": True},
                 "method.params": {"kd": {"temperature": {"low": 1, "high": 8}},
                                   "dkd": {"beta": {"low": 1, "high": 8}}}}
#: the job's parameters the launch form offers (besides the base spec and the space)
FORM = ("trials", "sampler", "pruner", "executor", "metric", "direction")


def choices(name: str) -> list[Any]:
    """The values the ``sweep`` job declares for its parameter ``name``."""
    from kdlab.runs.job import get_job

    return list(get_job(KIND).params[name].choices)


def as_mapping(text: str | Mapping[str, Any], field: str) -> dict[str, Any]:
    """A YAML (or JSON) mapping from the form's text area ``field`` (or a dict as it is)."""
    import yaml

    if isinstance(text, Mapping):
        return dict(text)
    try:
        data = yaml.safe_load(text or "")
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError.at(field, f"not valid YAML{where}: {getattr(e, 'problem', None) or e}") from None
    if not isinstance(data, dict):
        raise ConfigError.at(field, f"expected a YAML mapping (key: value lines), got {type(data).__name__}")
    return data


def launch_sweep(store: Store, spec: str | Mapping[str, Any], space: str | Mapping[str, Any], *,
                 name: str | None = None, **params: Any) -> RunHandle:
    """``kdlab.sweep`` of base ``spec`` over ``space`` (YAML text or dicts) with the job's ``params`` (``trials``,
    ``sampler``, ``pruner``, ``executor`` of the trials...) in ``store``; returns its ``RunHandle`` at once."""
    from kdlab.sweeps import sweep

    return sweep(as_mapping(spec, "spec"), as_mapping(space, "space"), store=store, name=name, **params)


def trials_frame(result: SweepResult) -> pd.DataFrame:
    """The trials table: number, state, objective, epochs, seconds, every parameter (short names), run id."""
    from kdlab.viz.sweeps import param_keys, short_names

    frame = result.frame()
    names = short_names(param_keys(result))
    frame = frame.rename(columns={"value": result.metric, "duration_s": "seconds", "run_id": "run", **names})
    cols = ["number", "state", result.metric, "epochs", "seconds", *names.values(), "run"]
    return frame[cols]


ROW_STYLES = {"pruned": "color: #9E9E9E", "failed": f"color: {GAP}", "interrupted": f"color: {GAP}"}


def row_style(row: pd.Series) -> list[str]:
    """The CSS of one row of the trials table: pruned trials greyed, failed ones red."""
    return [ROW_STYLES.get(row["state"], "")] * len(row)


def best_line(result: SweepResult) -> str:
    """``best: #12 kd, val/acc 0.934 (run abc)`` or that no trial finished yet (plain text)."""
    from kdlab.viz.sweeps import method_of

    best = result.best
    if best is None:
        return "no complete trial yet"
    return (f"best: #{best.number} {method_of(result, best)}, {result.metric} {best.value:.4g}"
            f"{f' (run {best.run_id})' if best.run_id else ''}")


def best_spec_yaml(result: SweepResult) -> str | None:
    """The best trial's full spec as YAML (None before a trial finished)."""
    from kdlab.viz.sweeps import yaml_text

    return yaml_text(result.best_spec()) if result.best is not None else None


def advice_text(advice: pd.DataFrame) -> str:
    """One line about ``advise``'s frame: the method to try first, its prediction, evidence and parameters."""
    if advice.empty:
        return "no finished sweep trials in the store yet: nothing to advise from"
    top = advice.iloc[0]
    params = ", ".join(f"{k.rsplit('.', 1)[-1]} {v:.3g}" if isinstance(v, float) else f"{k.rsplit('.', 1)[-1]} {v}"
                       for k, v in (top["best_params"] or {}).items())
    n = int(top["trials"])
    return (f"try {top['method']} first: predicted {top['predicted']:.3g} from {n} trial{'s' if n != 1 else ''}"
            f"{f' ({params})' if params else ''}{'; ' + top['note'] if top['note'] else ''}")


class Sweeps(param.Parameterized):
    """Launch sweeps and follow one: trials table, counts, best so far, best spec, figures, advice."""

    run_id = param.String(default=None, allow_None=True, doc="the sweep run shown")

    def __init__(self, store: Store | None = None, **form: Any):
        super().__init__()
        self.store = store if store is not None else open_store()
        self.result: SweepResult | None = None
        self.advice: pd.DataFrame | None = None
        self._seen: tuple[Any, ...] | None = None  # (run id, sweep.json mtime, status) last drawn
        self._advised: tuple[str, bool] | None = None  # (run id, done) of the last advice for a sweep's spec
        self._ticks = 0
        css = "kdlab-sweeps"
        self.picker = pn.widgets.Select(name="sweep", options={}, width=460, css_classes=[f"{css}-run"])
        self.picker.param.watch(lambda e: self.open(e.new) if e.new and e.new != self.run_id else None, "value")
        self.status = pn.pane.Markdown("no sweep yet: set the base spec and the space below and press **Launch "
                                       "sweep**", css_classes=[f"{css}-status"], sizing_mode="stretch_width")
        self.counts = pn.pane.Markdown("", css_classes=[f"{css}-counts"])
        self.best = pn.pane.Markdown("", css_classes=[f"{css}-best"])
        self.table = pn.widgets.Tabulator(pd.DataFrame(), show_index=False, disabled=True, height=320,
                                          sizing_mode="stretch_width", css_classes=[f"{css}-table"], visible=False)
        self.table.style.apply(row_style, axis=1)  # kept by Tabulator across new values
        self.method = pn.widgets.Select(name="parallel coordinates of", options=["all methods"], width=200,
                                        css_classes=[f"{css}-method"], visible=False)
        self.method.param.watch(lambda _e: self._draw_parallel(), "value")
        # a figure's pane is made with its first figure (a Plotly pane drawn while hidden keeps a wrong size)
        self.panes: dict[str, pn.pane.Plotly] = {}
        self.slots = {k: pn.Column(sizing_mode="stretch_width") for k in (*FIGURES, "advice")}
        self.best_spec = pn.pane.HTML("", css_classes=[f"{css}-best-spec"], sizing_mode="stretch_width",
                                      visible=False)
        self.advice_line = pn.pane.Markdown("", css_classes=[f"{css}-advice-line"])
        # the launch form: base spec and space as YAML, the job's settings
        import yaml

        self.spec = pn.widgets.TextAreaInput(name="base spec (YAML)", value=yaml.safe_dump(DEFAULT_SPEC,
                                             sort_keys=False), height=300, sizing_mode="stretch_width",
                                             css_classes=[f"{css}-spec"])
        self.space = pn.widgets.TextAreaInput(name="search space (YAML)", value=yaml.safe_dump(DEFAULT_SPACE,
                                              sort_keys=False), height=300, sizing_mode="stretch_width",
                                              css_classes=[f"{css}-space"])
        self.trials = pn.widgets.IntInput(name="trials", value=8, start=1, end=10_000, width=120,
                                          css_classes=[f"{css}-trials"])
        self.sampler = pn.widgets.Select(name="sampler", options=choices("sampler"), width=130)
        self.pruner = pn.widgets.Select(name="pruner", options=choices("pruner"), width=130)
        self.executor = pn.widgets.Select(name="trials run on", options=choices("executor"), width=130)
        self.metric = pn.widgets.Select(name="objective", options=choices("metric"), width=130)
        self.direction = pn.widgets.Select(name="direction", options=choices("direction"), width=130)
        for k, v in form.items():
            if k not in ("spec", "space", *FORM):
                raise ConfigError.at(k, "not a field of the sweep form", ["spec", "space", *FORM])
            getattr(self, k).value = v if k not in ("spec", "space") or isinstance(v, str) else yaml.safe_dump(
                v, sort_keys=False)
        self.launch_button = pn.widgets.Button(name="Launch sweep", button_type="primary",
                                               css_classes=[f"{css}-launch"])
        self.launch_button.on_click(lambda _e: self.launch())
        self.advise_button = pn.widgets.Button(name="Advise for this spec", css_classes=[f"{css}-advise"])
        self.advise_button.on_click(lambda _e: self.advise())
        self.form_status = pn.pane.Markdown("", css_classes=[f"{css}-form-status"])
        self.refresh_options()

    def form_values(self) -> dict[str, Any]:
        """The launch form's fields: ``spec`` and ``space`` (YAML text) and the job's settings."""
        return {"spec": self.spec.value, "space": self.space.value, **{k: getattr(self, k).value for k in FORM}}

    # -- actions (the buttons' Python calls) ---------------------------------------------------------
    def launch(self, **params: Any) -> RunHandle | None:
        """Start a sweep from the form (``params`` override its fields); shows it and returns its handle, or None
        (the reason on the page) when the form is invalid."""
        values = {**self.form_values(), **params}
        try:
            handle = launch_sweep(self.store, **values)
        except Exception as e:  # a bad spec or space: said on the page, nothing launched
            self.form_status.object = f"cannot start: {html.escape(str(e))}"
            return None
        self.form_status.object = f"launched sweep {handle.id}"
        self.refresh_options()
        self.open(handle.id)
        return handle

    def open(self, run_id: str | None) -> SweepResult | None:
        """Show sweep run ``run_id`` (its trials so far, or its result) and the advice for its base spec."""
        self.run_id = run_id
        self._seen = None
        if run_id and run_id in self.picker.options.values() and self.picker.value != run_id:
            self.picker.value = run_id
        self.update()
        return self.result

    def advise(self, spec: Mapping[str, Any] | str | None = None) -> pd.DataFrame | None:
        """"Try these first" for ``spec`` (default: the form's base spec) from the store's earlier sweeps."""
        from kdlab.sweeps.advice import advise
        from kdlab.viz.sweeps import advice_bars

        try:
            self.advice = advise(self.store, as_mapping(spec if spec is not None else self.spec.value, "spec"))
        except Exception as e:  # a spec the advice cannot read: said, nothing else changes
            self.advice_line.object = f"no advice: {html.escape(str(e))}"
            return None
        self.advice_line.object = html.escape(advice_text(self.advice))
        if not self.advice.empty:
            metric = self.result.metric if self.result is not None else "val/acc"
            self.show_figure("advice", advice_bars(self.advice, metric=metric))
        elif "advice" in self.panes:
            self.panes["advice"].visible = False
        return self.advice

    def refresh_options(self) -> None:
        """The picker's sweeps (newest first); the newest is shown when none is."""
        jobs = self.store.jobs(KIND)
        self.picker.options = {f"{r.name} · {r.status} · {r.id}": r.id for r in jobs}
        if self.run_id is None and jobs:
            self.open(jobs[0].id)

    def tick(self) -> None:
        """One poll (the dashboard calls it every second): redraw when the sweep's file or status changed; the
        picker's sweeps are read again then, and every few seconds (new sweeps, their statuses)."""
        self._ticks += 1
        if self.update() or self._ticks % 5 == 0:  # the picker's labels say each sweep's status
            self.refresh_options()

    def update(self) -> bool:
        """Read the shown sweep again if it changed; returns whether anything was redrawn."""
        if not self.run_id:
            return False
        rec = self.store.get_run(self.run_id)
        path = self.store.run_dir(self.run_id) / "artifacts" / SWEEP_FILE
        seen = (self.run_id, os.path.getmtime(path) if path.is_file() else None, rec.status)
        if seen == self._seen:
            return False
        self._seen = seen
        self.result = r = read_sweep(self.store.run_dir(self.run_id))
        self._draw(rec.status, rec.error)
        if r is not None and self._advised != (self.run_id, r.done):  # on opening a sweep, and when it is done
            self._advised = (self.run_id, r.done)
            self.advise(r.base_spec)
        return True

    # -- drawing ---------------------------------------------------------------------------------------
    def _draw(self, status: str, error: str | None) -> None:
        from kdlab.viz.sweeps import counts_line, method_of, sweep_figures

        r = self.result
        what = f"sweep {self.run_id}: {status}"
        if error and status in TERMINAL and status != "completed":
            what += f" ({(error or '').splitlines()[0]})"
        self.status.object = html.escape(what if r is not None else what + ", no trial started yet")
        # each part's visibility is set once, to what this draw shows (no hide-then-show in one update)
        figs = sweep_figures(r) if r is not None else {}
        for key, pane in self.panes.items():
            if key != "advice" and key not in figs:
                pane.visible = False
        self.counts.object = html.escape(counts_line(r)) if r is not None else ""
        self.best.object = f"**{html.escape(best_line(r))}**" if r is not None else ""
        if r is not None and r.trials:
            frame = trials_frame(r)
            if not frame.equals(self.table.value):
                self.table.value = frame
            height = min(360, 40 + 29 * len(r.trials))  # no blank rows under a short table
            if self.table.height != height:
                self.table.height = height
        self.table.visible = r is not None and bool(r.trials)
        for key, fig in figs.items():
            self.show_figure(key, fig)
        methods = sorted({method_of(r, t) for t in r.finished_trials}) if r is not None else []
        if self.method.options != ["all methods", *methods]:
            self.method.options = ["all methods", *methods]
        self.method.visible = "parallel" in figs and len(methods) > 1
        if "parallel" in figs and self.method.value != "all methods":
            self._draw_parallel()
        spec = best_spec_yaml(r) if r is not None else None
        if spec is not None:
            self.best_spec.object = (f"<b>best spec</b> (trial #{r.best.number}; run it with <code>kdlab train"
                                     f"</code>)<pre style='background:#FAFAFA;padding:8px'>{html.escape(spec)}</pre>")
        self.best_spec.visible = spec is not None

    def show_figure(self, key: str, fig: Any) -> None:
        """Show ``fig`` in the pane of ``key`` (made, in its slot, the first time)."""
        pane = self.panes.get(key)
        height = int(fig.layout.height or 420)
        if pane is None:
            self.panes[key] = pn.pane.Plotly(fig, sizing_mode="stretch_width", height=height,
                                             config={"displaylogo": False}, css_classes=[f"kdlab-sweeps-{key}"])
            self.slots[key].append(self.panes[key])
            return
        pane.object, pane.height, pane.visible = fig, height, True

    def _draw_parallel(self) -> None:
        from kdlab.viz.sweeps import parallel_coordinates

        r = self.result
        if r is None or len(r.finished_trials) < 2:
            return
        method = None if self.method.value == "all methods" else self.method.value
        try:
            self.show_figure("parallel", parallel_coordinates(r, method=method))
        except ConfigError:  # no complete trial of that method yet
            self.method.value = "all methods"

    def panel(self) -> pn.viewable.Viewable:
        form = pn.Card(pn.Row(self.spec, self.space, sizing_mode="stretch_width"),
                       pn.FlexBox(*(getattr(self, k) for k in FORM), self.launch_button, self.advise_button,
                                  sizing_mode="stretch_width"), self.form_status,
                       title="Launch a sweep", collapsed=bool(self.picker.options), sizing_mode="stretch_width",
                       css_classes=["kdlab-sweeps-form"])
        return pn.Column(
            pn.pane.Markdown("### Sweeps: search hyper-parameters, prune the hopeless, keep the best spec"), form,
            pn.FlexBox(self.picker, sizing_mode="stretch_width"), self.status, pn.Row(self.counts, self.best),
            self.table, self.slots["trials"], self.slots["curves"], self.method, self.slots["parallel"],
            self.slots["importances"], self.best_spec, pn.pane.Markdown("#### Try these first"), self.advice_line,
            self.slots["advice"], sizing_mode="stretch_width", css_classes=["kdlab-sweeps"])

    def widget(self, **params: Any) -> SweepWidget:
        """The ipywidgets face for notebooks: a sweep with the form's settings (``params`` override them)."""
        return SweepWidget(self.store, **{**self.form_values(), **params})


class SweepWidget(TaskWidget):
    """``SweepWidget(store, spec=..., space=..., trials=6)``: the sweep runs in a background job; its trials table
    and figures are redrawn as trials report (at most every ``LIVE_EVERY_S``), then the best spec."""

    kind = KIND
    title = "Launch sweep"
    LIVE_EVERY_S = 2.0

    def __init__(self, store: Store | str | None = None, **params: Any) -> None:
        super().__init__(store, **params)
        self._live: tuple[str, float] | None = None
        self._live_at = 0.0

    def compute(self) -> RunHandle:
        """Start the sweep (a run in the store) and follow it; returns at once."""
        if self.task is not None and not self.task.done:
            return self.task
        return self.follow(launch_sweep(self.store, **self.params))

    def figures(self, result: SweepResult | None) -> list[Any]:
        from IPython.display import HTML

        from kdlab.viz.sweeps import counts_line, sweep_figures

        if result is None:
            return []
        out: list[Any] = [HTML(f"<b>{html.escape(counts_line(result))}</b> · {html.escape(best_line(result))}")]
        if result.trials:
            out.append(trials_frame(result))
        out += list(sweep_figures(result).values())
        spec = best_spec_yaml(result)
        if spec is not None:
            out.append(HTML(f"<b>best spec</b><pre>{html.escape(spec)}</pre>"))
        return out

    def done_message(self, result: SweepResult | None) -> str:
        return best_line(result) if result is not None else "the sweep saved nothing"

    def update(self) -> bool:
        ended = super().update()
        task = self.task
        if ended or task is None or time.monotonic() - self._live_at < self.LIVE_EVERY_S:
            return ended
        self._live_at = time.monotonic()
        path = task.run_dir / "artifacts" / SWEEP_FILE
        mark = (task.id, os.path.getmtime(path)) if path.is_file() else None
        if mark is not None and mark != self._live:  # the trials so far, while it runs
            self._live = mark
            show(self.out, self.figures(read_sweep(task.run_dir)))
        return ended


register_component_page("Sweeps", Sweeps, "sweeps", order=25,
                        doc="Hyper-parameter sweeps: launch one, follow its trials live, keep the best spec, and "
                            "see which methods to try first.")
