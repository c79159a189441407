"""Language models: distill a causal LM on a text corpus and see what the student took, per domain and per token.

The work is the ``lm_distill`` job (``kdlab.jobs.lm_distill``). Faces: ``LanguageModelsPage`` (the dashboard page
**Language models**: launch form built from the job's declared parameters, its live loss terms, and a finished
run's views) and ``LanguageModelsWidget`` (ipywidgets, for notebooks). Both read what the job saved and draw it
with ``kdlab.viz.text``: bits per byte per domain (teacher, KD student, no-KD student), the token-divergence view of
a text, DDK's domain mixture, the loss terms, the generations.

The token view of a text the user types is recomputed with ``token_divergence`` on the run's saved student and its
cached teacher (at most ``MAX_TOKENS`` tokens of tiny models: well under a second), in a thread pool on the
dashboard (never on the server's loop) and in the calling cell in a notebook.
"""
from __future__ import annotations

import concurrent.futures as cf
import html
import json
from pathlib import Path
from typing import Any

import pandas as pd
import panel as pn
import param

from kdlab.errors import ConfigError
from kdlab.jobs.lm_distill import LMArtifacts, load_lm_artifacts
from kdlab.runs.store import Store
from kdlab.ui.job_panel import JobPanel
from kdlab.ui.pages import FinishedRunChoice, register_component_page
from kdlab.ui.task_widget import LiveTaskWidget

KIND = "lm_distill"
MAX_TOKENS = 512
_POOL = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="kdlab-tokens")


def figures(art: LMArtifacts | None, metrics: pd.DataFrame | None = None) -> dict[str, Any]:
    """The views of what an ``lm_distill`` run saved: ``bpb``, ``curves`` (with ``metrics``), ``mixture`` (DDK),
    ``tokens`` (same-vocabulary runs), ``samples`` (absent parts skipped)."""
    from kdlab.viz.text import bpb_bars, lm_curves, mixture_area, samples_table, token_view

    out: dict[str, Any] = {}
    if art is None:
        return out
    if art.eval is not None and len(art.eval):
        out["bpb"] = bpb_bars(art.eval)
    if metrics is not None and len(metrics) and metrics["key"].astype(str).str.startswith("loss/").any():
        out["curves"] = lm_curves(metrics)
    if art.mixture is not None and len(art.mixture):
        out["mixture"] = mixture_area(art.mixture)
    if art.tokens is not None and len(art.tokens):
        out["tokens"] = token_view(art.tokens)
    if art.samples:
        out["samples"] = samples_table(art.samples)
    return out


def summary_line(art: LMArtifacts) -> str:
    """One line about a run: method, sizes, bits per byte of each model on all test text, gap closed by KD."""
    from kdlab.viz.text import gap_closed

    s = art.summary or {}
    p = s.get("params") or {}
    parts = [f"method {p.get('method', '?')} ({s.get('mode', '?')})",
             f"teacher {s.get('teacher_params', 0):,} / student {s.get('student_params', 0):,} parameters"]
    if art.eval is not None and len(art.eval):
        rows = art.eval[art.eval["domain"].astype(str) == "all"]
        parts.append(", ".join(f"{m} {b:.3f}" for m, b in zip(rows["model"], rows["bpb"], strict=True)) + " bits/byte")
        closed = gap_closed(art.eval).get("all")
        if closed is not None and closed == closed:
            parts.append(f"KD closed {closed:.0%} of the no-KD student's gap to the teacher")
    return " · ".join(parts)


def teacher_folder(run_dir: str | Path) -> Path:
    """Where a run's teacher is: the user's ``teacher_path``, or the lab's model cache entry of its key."""
    from kdlab.text.cache import cache_folder

    art = load_lm_artifacts(run_dir)
    p = art.summary.get("params") or {}
    if art.summary.get("mode") in ("omp", "alm"):
        raise ConfigError(f"run {Path(run_dir).name}: a {art.summary['mode']} run's teacher does not share the "
                          "student's tokenizer, so there is no per-token KL to show")
    if p.get("teacher_path"):
        return Path(p["teacher_path"])
    key = (art.summary.get("teacher") or {}).get("key")
    folder = cache_folder(str(key))
    if not key or not (folder / "config.json").is_file():
        raise ConfigError(f"run {Path(run_dir).name}: its teacher is not in the model cache ({folder}); run the job "
                          "again with the same teacher settings to rebuild it")
    return folder


def token_table(run_dir: str | Path, text: str, max_tokens: int = MAX_TOKENS) -> pd.DataFrame:
    """The token-divergence view of ``text`` (its first ``max_tokens`` tokens) for a finished run's student and
    teacher: ``kdlab.text.token_divergence``'s DataFrame."""
    import torch

    from kdlab.text import TextTokenizer, load_lm, token_divergence

    if not text.strip():
        raise ConfigError("text: type some text to look at")
    folder = Path(run_dir)
    tok = TextTokenizer.load(folder / "student")
    student = load_lm(folder / "student", where="run student")
    teacher = load_lm(teacher_folder(folder), where="run teacher")
    ids = tok.encode(text)[:max_tokens + 1]
    short = tok.decode(ids) if len(ids) > max_tokens else text
    with torch.no_grad():
        return token_divergence(student, teacher, tok, short)


# ------------------------------------------------------------------------------------------ dashboard face

class LanguageModelsPage(FinishedRunChoice, param.Parameterized):
    """Launch an ``lm_distill`` run (form from its declared parameters) and follow it live; pick a finished run and
    see its bits per byte per domain, loss terms, DDK mixture, generations and the token view of any text."""

    run_id = param.String(default=None, allow_None=True)
    text = param.String(default="", doc="the text of the token view")
    run_kind = KIND

    def __init__(self, store: Store, **params: Any):
        super().__init__(**params)
        self.store = store
        from kdlab.text import LM_METHODS

        # the method and its parameters (a dict, which the generic form does not draw) are the page's own widgets
        self.method = pn.widgets.Select(name="method", options=LM_METHODS.names(), value="forward_kl", width=200,
                                        css_classes=["kdlab-lm-method"])
        self.method_params = pn.widgets.TextInput(name="method parameters (JSON)", value="{}", width=260,
                                                  css_classes=["kdlab-lm-method-params"])
        self.job = JobPanel(store, KIND, self._launched, "lm-launch", button="Launch distillation",
                            exclude=("method", "method_params"), fixed=self._method,
                            empty="set the parameters and press Launch distillation (a background run)",
                            heights={"bpb": 420})
        self.job.figures.visible = False  # a finished run is shown below (the picker switches to it)
        self.live = pn.pane.Plotly(sizing_mode="stretch_width", height=400, visible=False,
                                   config={"displaylogo": False}, css_classes=["kdlab-lm-live"])
        self._live_rows = -1
        self.picker = pn.widgets.Select(name="finished run", options={}, width=420, css_classes=["kdlab-lm-run"])
        self.picker.link(self, value="run_id")
        self.info = pn.pane.Markdown("", css_classes=["kdlab-lm-info"], sizing_mode="stretch_width")
        self.panes: dict[str, Any] = {}
        self.views = pn.Column(sizing_mode="stretch_width")
        self.text_input = pn.widgets.TextAreaInput(name="text of the token view", height=120,
                                                   sizing_mode="stretch_width", css_classes=["kdlab-lm-text"],
                                                   placeholder="type or paste any text, then Recompute")
        self.text_input.link(self, value="text")
        self.recompute_button = pn.widgets.Button(name="Recompute token view", button_type="primary",
                                                  css_classes=["kdlab-lm-recompute"])
        self.recompute_button.on_click(lambda _e: self.recompute())
        self.token_status = pn.pane.Markdown("", css_classes=["kdlab-lm-token-status"])
        self.future: cf.Future | None = None
        self._future_run: str | None = None
        self.refresh_options()
        self._picked()
        if self.job.follow() is not None:  # the followed run's method in the page's own widgets
            saved = self.job.task.record.spec.get("params") or {}
            if saved.get("method") in self.method.options:
                self.method.value = saved["method"]
            self.method_params.value = json.dumps(saved.get("method_params") or {})

    # -- the launched job ------------------------------------------------------------------------------
    def _method(self) -> dict[str, Any]:
        try:
            hp = json.loads(self.method_params.value or "{}")
        except json.JSONDecodeError as e:
            raise ConfigError(f"method parameters: not JSON ({e.msg}); e.g. {{\"beta\": 0.5}}") from None
        if not isinstance(hp, dict):
            raise ConfigError("method parameters: give a JSON object, e.g. {\"beta\": 0.5}")
        return {"method": self.method.value, "method_params": hp}

    def _launched(self, art: LMArtifacts) -> dict[str, Any]:
        """When the launched job is done: its bits-per-byte bars here, and the run chosen in the picker below."""
        from kdlab.viz.text import bpb_bars

        task = self.job.task
        if task is not None and task.id != self.run_id:
            self.refresh_options()
            self.picker.value = task.id
        return {"bpb": bpb_bars(art.eval)} if art is not None and art.eval is not None else {}

    def launch(self, **params: Any) -> Any:
        """Start an ``lm_distill`` run with the form's parameters (``params`` override them), as the button does."""
        if "method" in params:
            self.method.value = params.pop("method")
        if "method_params" in params:
            self.method_params.value = json.dumps(params.pop("method_params"))
        if params:
            self.job.form.param.update(**params)
        return self.job.compute()

    def _tick_live(self) -> None:
        task = self.job.task
        if task is None or task.done:  # its curves are then among the finished run's views
            self.live.visible = False
            return
        metrics = self.store.metrics(task.id)
        rows = int(metrics["key"].astype(str).str.startswith("loss/").sum()) if len(metrics) else 0
        if rows and rows != self._live_rows:
            from kdlab.viz.text import lm_curves

            self.live.object = lm_curves(metrics, title="Live: loss terms and validation bits per byte")
            self.live.visible = True
        self._live_rows = rows

    # -- a finished run ------------------------------------------------------------------------------
    @param.depends("run_id", watch=True)
    def _picked(self) -> None:
        folder = self.folder()
        if folder is None:
            self.info.object = "no finished language-model run yet: launch one above"
            self.recompute_button.disabled = True
            self._show({})
            return
        art = load_lm_artifacts(folder)
        self.info.object = html.escape(summary_line(art))
        self._show(figures(art, self.store.metrics(self.run_id)))
        mode = art.summary.get("mode")
        self.recompute_button.disabled = art.tokens is None or mode in ("omp", "alm")
        self.token_status.object = ("this run's models use different tokenizers: no per-token view"
                                    if self.recompute_button.disabled else "")
        if not self.text:
            self.text_input.value = (art.summary.get("params") or {}).get("text") or ""

    def _show(self, drawn: dict[str, Any]) -> None:
        order = ("tokens", "bpb", "curves", "mixture", "samples")  # the token view under its text box
        drawn = {k: drawn[k] for k in sorted(drawn, key=lambda k: order.index(k) if k in order else len(order))}
        for key, obj in drawn.items():
            pane = self.panes.get(key)
            if pane is None:
                pane = self.panes[key] = pn.pane.Plotly(obj, sizing_mode="stretch_width",
                                                        height=int(obj.layout.height or 420),
                                                        config={"displaylogo": False},
                                                        css_classes=[f"kdlab-lm-{key}"])
                self.views.append(pane)
            pane.object, pane.height = obj, int(obj.layout.height or 420)
            pane.visible = True
        for key, pane in self.panes.items():
            pane.visible = key in drawn

    def recompute(self, text: str | None = None) -> cf.Future | None:
        """Recompute the token view of ``text`` (default: the text box) for the picked run, in a worker thread;
        ``tick`` draws it when done. Returns the Future (of the DataFrame)."""
        folder = self.folder()
        if folder is None:
            self.token_status.object = "pick a finished run first"
            return None
        if text is not None:
            self.text_input.value = text
        if self.future is not None and not self.future.done():
            return self.future
        self.recompute_button.disabled = True
        self.token_status.object = "computing the token view…"
        self._future_run = self.run_id
        self.future = _POOL.submit(token_table, folder, self.text)
        return self.future

    def _tick_tokens(self) -> None:
        fut = self.future
        if fut is None or not fut.done():
            return
        self.future = None
        self.recompute_button.disabled = False
        if self._future_run != self.run_id:
            return
        error = fut.exception()
        if error is not None:
            self.token_status.object = f"cannot compute: {html.escape(str(error))}"
            return
        from kdlab.viz.text import token_view

        table = fut.result()
        if not len(table):
            self.token_status.object = "the text is too short: it needs at least two tokens"
            return
        fig = token_view(table, title="Token view of your text: KL(teacher ‖ student) per token")
        self._show({**{k: p.object for k, p in self.panes.items() if p.visible}, "tokens": fig})
        self.token_status.object = html.escape(f"{len(table)} tokens; mean KL {table['kl'].mean():.4f} nats")

    def tick(self) -> None:
        """Mirror the launched job (its live loss terms), draw a recomputed token view (each second)."""
        self.job.tick()
        self._tick_live()
        self._tick_tokens()

    def panel(self) -> pn.viewable.Viewable:
        launch = pn.Column(pn.pane.Markdown("### Distill a language model"),
                           pn.FlexBox(self.method, self.method_params, sizing_mode="stretch_width"), self.job.panel(),
                           self.live,
                           sizing_mode="stretch_width")
        tokens = pn.Column(pn.pane.Markdown("#### Token view of any text"), self.text_input,
                           pn.Row(self.recompute_button, self.token_status), sizing_mode="stretch_width")
        runs = pn.Column(pn.pane.Markdown("### A finished run"), self.picker, self.info, tokens, self.views,
                         sizing_mode="stretch_width")
        return pn.Column(launch, runs, sizing_mode="stretch_width", css_classes=["kdlab-language-models"])

    def __panel__(self) -> pn.viewable.Viewable:
        return self.panel()


register_component_page("Language models", LanguageModelsPage, "language_models", order=60,
                        doc="Distill a causal LM: bits per byte per domain, token-level divergence, DDK mixture.")


# ------------------------------------------------------------------------------------------ notebook face

class LanguageModelsWidget(LiveTaskWidget):
    """``LanguageModelsWidget(method="forward_kl", steps=300, ...)`` (any ``lm_distill`` parameter): the run as a
    background job, its loss terms drawn live while it trains, then its views; ``token_view(text)`` draws the
    token view of any text for the finished run."""

    kind = KIND
    title = "Distill"

    def figures(self, result: LMArtifacts) -> list[Any]:
        metrics = self.store.metrics(self.task.id) if self.task is not None else None
        return list(figures(result, metrics).values())

    def done_message(self, result: LMArtifacts) -> str:
        return "done: " + summary_line(result)

    def live_figure(self, metrics: Any) -> Any:
        from kdlab.viz.text import lm_curves

        return lm_curves(metrics, title="Live: loss terms and validation bits per byte")

    def token_view(self, text: str, max_tokens: int = MAX_TOKENS) -> Any:
        """The token view of ``text`` for the finished run (computed here: tiny models, under a second)."""
        from kdlab.viz.text import token_view

        if self.task is None or not self.task.done:
            raise ConfigError("token_view: the run has not finished yet; call wait() first")
        table = token_table(self.task.run_dir, text, max_tokens)
        return token_view(table, title="Token view of your text: KL(teacher ‖ student) per token")


__all__ = ["LanguageModelsPage", "LanguageModelsWidget", "figures", "summary_line", "teacher_folder", "token_table"]
