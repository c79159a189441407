"""The Panel dashboard: pages from the page registry, one ``Dashboard`` per browser session.

``build_app(store=None)`` returns the page (``dashboards/app.py`` makes it servable); ``serve(port,
address)`` serves it (``kdlab serve``). A periodic callback (every ``POLL_MS``) calls ``Dashboard.tick``,
which polls the store incrementally; a second one (every ``BUSY_POLL_MS``) polls only the pages waiting on a
job they started (``busy``), so a result is drawn soon after its job ends. Training runs in worker processes
(forked from the server's fork server: no imports on the way from a button to its job) and reports build in a
thread pool, so nothing long ever runs on the server's loop.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import panel as pn
import param

from kdlab.runs.executors import get_executor
from kdlab.runs.forkserver import ANALYSIS_PRELOAD
from kdlab.runs.scheduler import refresh
from kdlab.runs.store import Store, open_store
from kdlab.ui.auth import configure_panel, serve_settings, websocket_origins
from kdlab.ui.compare import ComparePage
from kdlab.ui.detail import RunDetail
from kdlab.ui.launcher import Launcher
from kdlab.ui.live import LiveCurves
from kdlab.ui.pages import pages, register_page
from kdlab.ui.runs import RunsTable

POLL_MS = 1000
BUSY_POLL_MS = 200  # how often a page waiting on its job (``busy``) is polled


class Dashboard(param.Parameterized):
    """Shared state of one session: the store, the built pages, navigation (``show``, ``open_run``)."""

    page = param.String(default="Runs", doc="the page shown")

    def __init__(self, store: Store | str | None = None, **params: Any):
        super().__init__(**params)
        self.store = store if isinstance(store, Store) else open_store(store)
        self.components: dict[str, Any] = {}  # name -> component with an optional tick()
        self.names = [p.name for p in pages()]
        self._holders = {n: pn.Column(sizing_mode="stretch_width", name=n) for n in self.names}
        self.tabs = pn.Tabs(*self._holders.values(), dynamic=True, sizing_mode="stretch_width")
        self.tabs.param.watch(lambda e: self.show(self.names[e.new]), "active")
        self.ticks = 0  # polls done (the periodic callback, while a browser is connected)
        self.show(self.page if self.page in self.names else self.names[0])

    # -- navigation ----------------------------------------------------------------------------
    def build_page(self, name: str) -> Any:
        """Build page ``name`` once (lazily) and return its holder."""
        holder = self._holders[name]
        if not holder.objects:
            page = next(p for p in pages() if p.name == name)
            holder.objects = [page.builder(self)]
        return holder

    def show(self, name: str) -> None:
        """Switch to page ``name`` (as clicking its tab)."""
        if name not in self._holders:
            raise KeyError(f"page {name!r} is not registered; pages: {', '.join(self.names)}")
        self.build_page(name)
        self.page = name
        i = self.names.index(name)
        if self.tabs.active != i:
            self.tabs.active = i

    def open_run(self, run_id: str) -> None:
        """Follow ``run_id`` in the live curves (and the run detail page when built)."""
        if "live" in self.components:
            self.components["live"].run_id = run_id
        if "detail" in self.components:
            self.components["detail"].open(run_id)

    def tick(self) -> None:
        """One poll of every built component (the periodic callback); skipped while no browser is connected
        (a closed tab's session lives on for the server's unused-session lifetime, 15 s or more)."""
        if not browser_connected():
            return
        self.ticks += 1
        if self.ticks % 3 == 1:
            try:  # the dashboard's one scheduling call: notice dead workers, start queued runs
                refresh(self.store)
            except Exception as e:
                self.param.warning(f"refresh: {type(e).__name__}: {e}")
        for key, comp in list(self.components.items()):
            if key == "runs" and self.ticks % 3:
                continue  # the table every 3 s, the live curves every tick
            self._tick(key, comp)

    def tick_busy(self) -> None:
        """Poll the components waiting on a job they started (``busy``): their result is drawn within
        ``BUSY_POLL_MS`` of the job's end instead of up to ``POLL_MS`` (the faster callback)."""
        if not browser_connected():
            return
        for key, comp in list(self.components.items()):
            if getattr(comp, "busy", False):
                self._tick(key, comp)

    def _tick(self, key: str, comp: Any) -> None:
        if not hasattr(comp, "tick"):
            return
        try:
            comp.tick()
        except Exception as e:  # a store hiccup must not kill the callback
            self.param.warning(f"{key}: {type(e).__name__}: {e}")

    def panel(self) -> pn.viewable.Viewable:
        return self.tabs


def browser_connected() -> bool:
    """Whether a browser is connected to the current served session (True outside a server)."""
    ctx = pn.state.curdoc.session_context if pn.state.curdoc is not None else None
    session = getattr(ctx, "session", None)
    return session is None or session.connection_count > 0


# ---------------------------------------------------------------------------------------- built-in pages

def lazy_card(build: Any, title: str, collapsed: bool, **kw: Any) -> pn.Card:
    """A card whose content is built when it is first opened: an empty store opens on the launch form; with
    runs, the page is about them and the form (dozens of widgets the browser would lay out) is one click away."""
    card = pn.Card(title=title, collapsed=collapsed, sizing_mode="stretch_width", **kw)

    def fill(*_: Any) -> None:
        if not card.collapsed and not card.objects:
            card.objects = [build()]

    card.param.watch(fill, "collapsed")
    fill()
    return card


def when_loaded(fn: Any) -> None:
    """Run ``fn`` once the browser has drawn the first view (served), or at once (built in Python): what the
    first view does not need (the runs table, the launch form) must not delay it."""
    if pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
        pn.state.onload(fn)
    else:
        fn()


def runs_page(dash: Dashboard) -> Any:
    """Launch runs, follow one live, cancel/resume it, browse and tag the store's runs. The newest run's live
    curves come first; the runs table and the launch card join them once the page is drawn."""
    newest = dash.store.records(limit=1)
    live = LiveCurves(dash.store, run_id=newest[0].id if newest else None)
    dash.components["live"] = live
    launch_slot = pn.Column(sizing_mode="stretch_width")
    runs = pn.Column(pn.pane.Markdown("### Runs"), sizing_mode="stretch_width")

    def launcher() -> Any:
        """The launch form, built when its card first opens (``components['launcher']`` from then on)."""

        def launched(handle: Any) -> None:
            live.run_id = handle.id
            dash.components["runs"].refresh()

        dash.components["launcher"] = form = Launcher(dash.store, on_launch=launched)
        return form.panel()

    def rest() -> None:
        dash.components["runs"] = table = RunsTable(dash.store, on_open=dash.open_run)
        runs.append(table.panel())
        launch_slot.objects = [lazy_card(launcher, "Launch a run", collapsed=bool(len(table.all)),
                                         css_classes=["kdlab-launch-card"])]

    when_loaded(rest)
    return pn.Column(launch_slot, pn.Row(runs, pn.Column(pn.pane.Markdown("### Live"), live.panel(),
                                                         sizing_mode="stretch_width"),
                                         sizing_mode="stretch_width"),
                     sizing_mode="stretch_width")


def compare_page(dash: Dashboard) -> Any:
    """Overlay runs' curves, see their final metrics, export a report."""
    page = ComparePage(dash.store)
    selected = dash.components["runs"].selected if "runs" in dash.components else []
    if not selected:  # default: the newest finished runs
        df = dash.store.list_runs()
        selected = list(df.loc[df["status"] == "completed", "id"][:4])
    if selected:
        page.compare(selected)
    dash.components["compare"] = page
    return page.panel()


def detail_page(dash: Dashboard) -> Any:
    """One run: config, figures, artifacts."""
    page = RunDetail(dash.store)
    live = dash.components.get("live")
    if live is not None and live.run_id:
        page.open(live.run_id)
    dash.components["detail"] = page
    return page.panel()


register_page("Runs", runs_page, order=0, replace=True)
register_page("Compare", compare_page, order=10, replace=True)
register_page("Run detail", detail_page, order=20, replace=True)


# ---------------------------------------------------------------------------------------- app & serve

def build_app(store: Store | str | None = None, poll_ms: int = POLL_MS) -> pn.viewable.Viewable:
    """The dashboard of one session (``store``: default ``KDLAB_HOME``); polls every ``poll_ms`` when served."""
    pn.extension("plotly", "tabulator", notifications=False)
    dash = Dashboard(store)
    header = pn.pane.Markdown(f"## kdlab &nbsp; <small>store `{dash.store.root}`</small>", margin=(5, 10))
    app = pn.Column(header, dash.panel(), sizing_mode="stretch_width", css_classes=["kdlab-app"])
    app.dashboard = dash  # type: ignore[attr-defined]
    if pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
        hold_fork_server()
        pn.state.onload(lambda: pn.state.add_periodic_callback(dash.tick, period=poll_ms))
        pn.state.onload(lambda: pn.state.add_periodic_callback(dash.tick_busy, period=min(poll_ms, BUSY_POLL_MS)))
    return app


def hold_fork_server() -> None:
    """Have this (serving) process start its jobs' workers through a fork server that has torch, kdlab and the
    analysis jobs' imports done: a job's worker is up ~0.1 s after its button instead of ~2-3 s (idempotent)."""
    get_executor("local").use_fork_server(ANALYSIS_PRELOAD)


def serve(port: int = 5006, address: str = "127.0.0.1", show: bool = False, store: str | None = None, *,
          basic_auth: str | None = None, oauth_provider: str | None = None, oauth_key: str | None = None,
          oauth_redirect_uri: str | None = None, oauth_extra_params: str | None = None,
          allow_users: Sequence[str] = (), allow_origins: Sequence[str] = (), ssl_certfile: str | None = None,
          ssl_keyfile: str | None = None) -> None:
    """Serve the dashboard on ``address:port`` (localhost by default) until interrupted; prints the URL.

    On any non-loopback address a login is required (``kdlab.ui.auth``: ``basic_auth`` / ``oauth_*`` or their
    ``KDLAB_*`` variables), else ``ConfigError`` before anything listens."""
    settings = serve_settings(address, basic_auth=basic_auth, oauth_provider=oauth_provider, oauth_key=oauth_key,
                              oauth_redirect_uri=oauth_redirect_uri, oauth_extra_params=oauth_extra_params,
                              allow_users=allow_users, ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile)
    if store:
        os.environ["KDLAB_HOME"] = str(store)
    configure_panel(settings)
    hold_fork_server()  # its imports run while the server starts and the first page loads
    origins = websocket_origins(address, port, allow_origins)
    scheme = "https" if settings.kwargs.get("ssl_certfile") else "http"
    host = f"[{address}]" if ":" in address else address
    print(f"kdlab dashboard: {scheme}://{host}:{port}/ ({settings.describe()}; store {open_store().root}; "
          "Ctrl-C stops)", flush=True)
    for note in settings.notes:
        print(note, flush=True)
    pn.serve({"/": lambda: build_app()}, port=port, address=address, show=show, websocket_origin=origins,
             title="kdlab", threaded=False, start=True, **settings.kwargs)
