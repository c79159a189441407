"""A served dashboard session polls the store while a browser shows it, and stops when the tab closes."""
from __future__ import annotations

import time

import pytest
from dashboard_helpers import free_port

pytestmark = pytest.mark.slow


def _wait(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_closed_tab_stops_polling(browser, tmp_path):
    import panel as pn

    from kdlab.ui.dashboard import build_app

    apps = []

    def session():
        apps.append(build_app(str(tmp_path / "home"), poll_ms=200))
        return apps[-1]

    port = free_port()
    server = pn.serve({"/": session}, port=port, address="127.0.0.1", show=False, threaded=True,
                      websocket_origin=[f"127.0.0.1:{port}"])
    try:
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{port}/")
        page.locator(".kdlab-live-empty").first.wait_for(timeout=60_000)  # an empty store: the empty state
        dash = apps[-1].dashboard
        _wait(lambda: dash.ticks >= 3, 30, "the connected session never polled")
        page.close()
        time.sleep(1.0)  # the server sees the websocket close
        stopped = dash.ticks
        time.sleep(1.5)  # 7 poll periods: the session itself lives on (bokeh keeps it 15 s or more)
        assert dash.ticks == stopped, "a session without a browser kept polling the store"
    finally:
        server.stop()
