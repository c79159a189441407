"""Launch a run from a form generated from the spec and the registries (``kdlab.ui.forms``).

Two faces of one form description: ``Launcher`` (Panel, a ``param.Parameterized``) and ``LauncherWidget``
(ipywidgets). Both map ``forms.Field`` objects to widgets, keep their values in a ``forms.FormState``,
show ``load_spec``'s messages under the field they name, and launch through ``kdlab.launch`` (the run
trains in a worker process; nothing here waits for it).
"""
from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import panel as pn
import param

from kdlab.ui import forms
from kdlab.ui.forms import Field, FormState

SECTION_TITLES = {"run": "Run", "data": "Data", "teacher": "Teacher", "student": "Student", "method": "Method"}


def _label(f: Field) -> str:
    rng = ""
    if f.low is not None or f.high is not None:
        rng = f" [{'' if f.low is None else f'{f.low:g}'}, {'' if f.high is None else f'{f.high:g}'}]"
    return f"{f.label}{rng}"


def _text(value: Any) -> str:
    """A field's value as typed in a text box (lists comma separated, ``None`` empty)."""
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return "" if value is None else str(value)


def _css_id(path: str) -> str:
    return "kdlab-field-" + path.replace(".", "-").replace("_", "-")


class _FormCore:
    """Toolkit-free behaviour shared by both launchers: values, validation, launching."""

    state: FormState
    store: Any
    errors: dict[str, str]
    selects: dict[str, Any]
    widgets: dict[str, Any]

    def _init_core(self, store: Any, on_launch: Callable[[Any], None] | None) -> None:
        from kdlab.runs.store import open_store

        self.store = store if store is not None else open_store()
        self.state = FormState()
        self.errors = {}
        self.on_launch = on_launch
        self.handles: list[Any] = []

    def validate(self) -> dict[str, str]:
        """Check the form with ``load_spec``; returns (and shows) ``{field path: message}``."""
        _spec, self.errors = forms.validate(self.state)
        self._show_errors()
        return self.errors

    def spec(self) -> dict[str, Any]:
        return self.state.to_spec()

    def launch(self, executor: str = "local") -> Any:
        """Validate and launch in the background; returns the ``RunHandle`` (None when the form is invalid)."""
        from kdlab.runs.background import launch

        spec, self.errors = forms.validate(self.state)
        self._show_errors()
        if spec is None:
            return None
        try:
            handle = launch(spec, executor=executor, store=self.store, name=spec.name, log_every=5)
        except Exception as e:  # e.g. an executor check: shown on the form
            self.errors = forms.error_map(e, self.state.all_fields()) or {"": str(e)}
            self._show_errors()
            return None
        self.handles.append(handle)
        self._launched(handle)
        if self.on_launch is not None:
            self.on_launch(handle)
        return handle

    # -- python calls (what the widgets do) -------------------------------------------------------
    def select(self, section: str, name: str) -> None:
        """Pick ``name`` for ``section`` (rebuilds that section's parameter fields)."""
        if self.state.names.get(section) == name:
            return
        self.state.set_name(section, name)
        if self.selects[section].value != name:
            self.selects[section].value = name
        self._rebuild()

    def set_value(self, path: str, value: Any) -> None:
        """Set field ``path`` (e.g. ``method.params.temperature``) as if typed, and validate."""
        w = self.widgets[path]
        if w.value != value:
            w.value = value
        else:
            self._changed(path, value)

    def _changed(self, path: str, raw: Any) -> None:
        f = self.state.all_fields()[path]
        self.state.values[path] = forms.coerce(f, raw)
        self.validate()

    def _rebuild(self) -> None:  # pragma: no cover - overridden
        pass

    def _show_errors(self) -> None:  # pragma: no cover - overridden
        pass

    def _launched(self, handle: Any) -> None:  # pragma: no cover - overridden
        pass


class Launcher(param.Parameterized, _FormCore):
    """Panel launcher: selects for data/teacher/student/method, their parameters, optimisation, tags.

    Python calls mirror the clicks: ``select("method", "dkd")``, ``set_value("method.params.beta", 4.0)``,
    ``validate()``, ``launch()``.
    """

    valid = param.Boolean(default=True, doc="the form describes a valid spec")
    last_run = param.String(default=None, allow_None=True, doc="id of the last run launched")

    def __init__(self, store: Any = None, on_launch: Callable[[Any], None] | None = None, **params: Any):
        param.Parameterized.__init__(self, **params)
        self._init_core(store, on_launch)
        self.widgets: dict[str, Any] = {}
        self.error_panes: dict[str, pn.pane.Markdown] = {}
        self.selects = {s: pn.widgets.Select(name=s, options=forms.choices(s), value=self.state.names[s],
                                             css_classes=[f"kdlab-select-{s}"], width=180)
                        for s in forms.SECTIONS}
        for s, w in self.selects.items():
            w.param.watch(lambda e, s=s: self.select(s, e.new), "value")
        self.tags = pn.widgets.TextInput(name="tags (comma separated)", value="", width=180)
        self.tags.param.watch(lambda e: self._set_tags(e.new), "value")
        self.form_error = pn.pane.Alert("", alert_type="danger", visible=False, css_classes=["kdlab-form-error"])
        self.launch_button = pn.widgets.Button(name="Launch", button_type="success", css_classes=["kdlab-launch"])
        self.launch_button.on_click(lambda _e: self.launch())
        self.launched = pn.pane.Markdown("", css_classes=["kdlab-launched"])
        self.sections = {s: pn.Column(sizing_mode="stretch_width") for s in SECTION_TITLES}
        self._rebuild()

    def _set_tags(self, text: str) -> None:
        self.state.tags = [t.strip() for t in str(text).split(",") if t.strip()]

    # -- widgets -------------------------------------------------------------------------------
    def _widget(self, f: Field) -> Any:
        value = self.state.value(f.path)
        common = dict(name=_label(f), description=f.doc or None, width=180, css_classes=[_css_id(f.path)])
        if f.kind == "choice":
            w = pn.widgets.Select(options=list(f.choices or ()), value=value, **common)
        elif f.kind == "bool":
            common.pop("description")
            w = pn.widgets.Checkbox(value=bool(value), **common)
        elif f.kind == "int":
            w = pn.widgets.IntInput(value=value, placeholder="default" if value is None else "", **common)
        elif f.kind == "float":
            w = pn.widgets.FloatInput(value=value, placeholder="default" if value is None else "", **common)
        else:
            text = _text(value)
            w = pn.widgets.TextInput(value=text, placeholder="default" if value is None else "", **common)
        w.param.watch(lambda e, p=f.path: self._changed(p, e.new), "value")
        return w

    def _rebuild(self) -> None:
        self.widgets, self.error_panes = {}, {}
        teacher = forms.uses_teacher(self.state.names["method"])
        for section, fields in self.state.fields().items():
            items: list[Any] = []
            if section in self.selects:
                items.append(self.selects[section])
            if section == "teacher" and not teacher:
                items.append(pn.pane.Markdown(f"*{self.state.names['method']} uses no teacher*"))
                fields = []
            for f in fields:
                w = self._widget(f)
                err = pn.pane.Markdown("", visible=False, css_classes=["kdlab-error", _css_id(f.path) + "-error"],
                                       styles={"color": "#c0392b", "font-size": "12px"}, margin=(0, 10))
                self.widgets[f.path], self.error_panes[f.path] = w, err
                items += [w, err]
            if section == "run":
                items.append(self.tags)
            self.sections[section].objects = [pn.pane.Markdown(f"#### {SECTION_TITLES[section]}"), *items]
        self.validate()

    def _show_errors(self) -> None:
        for path, pane in self.error_panes.items():
            msg = self.errors.get(path)
            pane.object, pane.visible = (f"⚠ {html.escape(msg)}" if msg else ""), bool(msg)
        other = {k: v for k, v in self.errors.items() if k not in self.error_panes}
        self.form_error.object = "\n".join(f"**{k or 'spec'}**: {html.escape(v)}" for k, v in other.items())
        self.form_error.visible = bool(other)
        self.valid = not self.errors
        self.launch_button.disabled = bool(self.errors)

    def _launched(self, handle: Any) -> None:
        self.last_run = handle.id
        self.launched.object = f"launched **{html.escape(self.state.value('name'))}** as `{handle.id}`"

    def panel(self) -> pn.viewable.Viewable:
        grid = pn.FlexBox(*self.sections.values(), flex_wrap="wrap")
        return pn.Column(grid, self.form_error, pn.Row(self.launch_button, self.launched), sizing_mode="stretch_width")

    def __panel__(self) -> pn.viewable.Viewable:
        return self.panel()


class LauncherWidget(_FormCore):
    """ipywidgets launcher built from the same ``forms`` description; ``launch()`` returns the ``RunHandle``."""

    def __init__(self, store: Any = None, on_launch: Callable[[Any], None] | None = None):
        import ipywidgets as w

        self._w = w
        self._init_core(store, on_launch)
        self.widgets: dict[str, Any] = {}
        self.error_labels: dict[str, Any] = {}
        self.selects = {s: w.Dropdown(options=forms.choices(s), value=self.state.names[s], description=s)
                        for s in forms.SECTIONS}
        for s, d in self.selects.items():
            d.observe(lambda ch, s=s: self.select(s, ch["new"]), names="value")
        self.form_error = w.HTML("")
        self.launch_button = w.Button(description="Launch", button_style="success")
        self.launch_button.on_click(lambda _b: self.launch())
        self.launched = w.HTML("")
        self.body = w.VBox()
        self.widget = w.VBox([self.body, self.form_error, w.HBox([self.launch_button, self.launched])])
        self._rebuild()

    def _widget(self, f: Field) -> Any:
        w = self._w
        value = self.state.value(f.path)
        kw = dict(description=f.label, tooltip=f.doc, style={"description_width": "initial"})
        if f.kind == "choice":
            wid = w.Dropdown(options=list(f.choices or ()), value=value, **kw)
        elif f.kind == "bool":
            wid = w.Checkbox(value=bool(value), **kw)
        elif f.kind in ("int", "float") and value is not None:
            wid = (w.IntText if f.kind == "int" else w.FloatText)(value=value, **kw)
        else:
            text = _text(value)
            wid = w.Text(value=text, placeholder="default" if value is None else "", **kw)
        wid.observe(lambda ch, p=f.path: self._changed(p, ch["new"]), names="value")
        return wid

    def _rebuild(self) -> None:
        w = self._w
        self.widgets, self.error_labels = {}, {}
        rows: list[Any] = []
        for section, fields in self.state.fields().items():
            rows.append(w.HTML(f"<b>{SECTION_TITLES[section]}</b>"))
            if section in self.selects:
                rows.append(self.selects[section])
            if section == "teacher" and not forms.uses_teacher(self.state.names["method"]):
                continue
            for f in fields:
                wid, err = self._widget(f), w.HTML("")
                rng = _label(f)[len(f.label):]
                self.widgets[f.path], self.error_labels[f.path] = wid, err
                rows.append(w.HBox([wid, w.HTML(f"<small>{html.escape(rng)}</small>"), err]))
        self.body.children = rows
        self.validate()

    def _show_errors(self) -> None:
        for path, label in self.error_labels.items():
            msg = self.errors.get(path)
            label.value = f"<span style='color:#c0392b'>⚠ {html.escape(msg)}</span>" if msg else ""
        other = {k: v for k, v in self.errors.items() if k not in self.error_labels}
        self.form_error.value = "<br>".join(f"<span style='color:#c0392b'><b>{html.escape(k or 'spec')}</b>: "
                                            f"{html.escape(v)}</span>" for k, v in other.items())
        self.launch_button.disabled = bool(self.errors)

    def _launched(self, handle: Any) -> None:
        self.launched.value = f"launched <code>{handle.id}</code>"

    def _repr_mimebundle_(self, **kw: Any) -> Any:
        return self.widget._repr_mimebundle_(**kw)
