"""The dashboard in a real browser: launch a run from the form, watch its live curve grow, compare, export."""
from __future__ import annotations

import time

import pytest
from dashboard_helpers import start_server, stop_server
from playwright.sync_api import expect

pytestmark = pytest.mark.slow


def _fill(page, path: str, value: str) -> None:
    css = "kdlab-field-" + path.replace(".", "-").replace("_", "-")
    box = page.locator(f".{css} input").first
    box.fill(value)
    box.press("Enter")


def _text(page, css: str) -> str:
    loc = page.locator(css)
    return loc.first.inner_text() if loc.count() else ""


def _plot_points(page) -> int:
    return page.locator(".kdlab-live-plot .js-plotly-plot").first.evaluate(
        "el => (el.data || []).reduce((n, t) => n + (t.x ? t.x.length : 0), 0)")


def test_launch_watch_compare_export(browser, shots, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    proc, url = start_server(home)
    try:
        page = browser.new_page(viewport={"width": 1500, "height": 1300}, accept_downloads=True)
        page.goto(url)
        page.locator(".kdlab-launch button").wait_for(timeout=60_000)

        # an invalid value shows the spec's message under its field, and disables Launch
        _fill(page, "method.params.temperature", "500")
        err = page.locator(".kdlab-field-method-params-temperature-error")
        expect(err).to_contain_text("outside", timeout=10_000)
        expect(page.locator(".kdlab-launch button")).to_be_disabled()
        _fill(page, "method.params.temperature", "4")
        err.wait_for(state="hidden", timeout=10_000)

        for path, value in [("name", "browser-kd"), ("optim.epochs", "150"), ("optim.batch_size", "32"),
                            ("teacher.optim.epochs", "1"), ("data.params.n_train", "600"),
                            ("teacher.params.width", "8"), ("student.params.width", "32")]:
            _fill(page, path, value)
        page.locator(".kdlab-field-device select").first.select_option("cpu")
        page.wait_for_timeout(300)
        page.locator(".kdlab-launch button").click()
        expect(page.locator(".kdlab-launched")).to_contain_text("launched", timeout=15_000)

        # the live curve gains points while the run is running
        seen: list[tuple[str, int, int]] = []
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            status = _text(page, ".kdlab-status")
            pts = int(_text(page, ".kdlab-points") or 0)
            seen.append((status, pts, _plot_points(page) if pts else 0))
            if status in ("completed", "failed", "cancelled", "interrupted"):
                break
            page.wait_for_timeout(250)
        while_running = [(p, q) for s, p, q in seen if s == "running" and p > 0]
        assert seen[-1][0] == "completed", seen[-8:]
        assert len({p for p, _ in while_running}) >= 2, f"no growth seen while running: {seen}"
        assert max(q for _, q in while_running) > min(q for _, q in while_running), while_running
        page.wait_for_timeout(1200)
        page.screenshot(path=str(shots / "runs.png"), full_page=True)

        # compare: the finished run is preselected; export a report and download it
        page.locator(".bk-tab", has_text="Compare").first.click()
        page.locator(".kdlab-export button").wait_for(timeout=30_000)
        page.wait_for_timeout(1000)
        page.locator(".kdlab-export button").click()
        page.locator(".kdlab-download").first.wait_for(state="visible", timeout=60_000)
        page.screenshot(path=str(shots / "compare.png"), full_page=True)
        with page.expect_download(timeout=30_000) as dl:
            page.locator(".kdlab-download button, .kdlab-download a").first.click()
        out = tmp_path / "report.html"
        dl.value.save_as(out)
        text = out.read_text()
        assert "<html" in text.lower() and "browser-kd" in text
        assert "plotly" in text.lower()

        page.locator(".bk-tab", has_text="Run detail").first.click()
        expect(page.locator(".kdlab-detail-header")).to_contain_text("browser-kd", timeout=30_000)
        page.wait_for_timeout(1000)
        page.screenshot(path=str(shots / "run_detail.png"), full_page=True)
        page.close()
    finally:
        stop_server(proc)
