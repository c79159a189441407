"""`kdlab serve --address 0.0.0.0 --basic-auth FILE` in a real browser, reached through this machine's network IP:
nothing of the dashboard (page, autoload script, websocket) without a login; a wrong password stays out; a user
the --allow-user list leaves out gets no dashboard and cannot forge a websocket token; the right login renders it.
The pure settings and the refusal without auth are tests/ui/test_auth.py."""
from __future__ import annotations

import asyncio
import http.client
import ipaddress
import re
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import pytest
from dashboard_helpers import start_server, stop_server
from playwright.sync_api import expect

from kdlab.ui.auth import local_addresses

pytestmark = pytest.mark.slow

USERS = {"alice": "correct horse", "bob": "bob-pw"}


def _network_host() -> str:
    """A non-loopback IPv4 of this machine (the test then crosses a real interface), else 127.0.0.1."""
    for a in local_addresses():
        try:
            if ipaddress.ip_address(a).version == 4:
                return a
        except ValueError:
            continue
    return "127.0.0.1"


def _request(base: str, path: str, method: str = "GET", body: str | None = None,
             cookie: str = "") -> tuple[int, dict[str, str], str]:
    """One HTTP request, redirects not followed: status, headers (Set-Cookie values joined by '; '), body."""
    u = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    headers = {"Cookie": cookie} if cookie else {}
    if body is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    conn.request(method, path, body=body, headers=headers)
    r = conn.getresponse()
    text = r.read().decode("utf-8", "replace")
    out = {k.lower(): v for k, v in r.getheaders()}
    out["set-cookie"] = "; ".join(v.split(";", 1)[0] for k, v in r.getheaders() if k.lower() == "set-cookie")
    conn.close()
    return r.status, out, text


def _login_cookie(base: str, user: str, password: str) -> str:
    status, headers, _ = _request(base, "/login", "POST", urllib.parse.urlencode(
        {"username": user, "password": password}))
    assert status == 302 and "error=" not in headers.get("location", ""), (status, headers)
    return headers["set-cookie"]


def _websocket(base: str, token: str, cookie: str = "") -> str:
    """Open Bokeh's ``/ws`` with ``token`` (as the browser does): ``"http 403"`` if the handshake is refused,
    ``"closed"`` if the server closes it at once, ``"message"`` if it answers (a working session)."""
    from tornado.httpclient import HTTPClientError, HTTPRequest
    from tornado.websocket import websocket_connect

    async def go() -> str:
        url = base.replace("http://", "ws://") + "ws"
        headers = {"Origin": base.rstrip("/"), **({"Cookie": cookie} if cookie else {})}
        try:
            conn = await websocket_connect(HTTPRequest(url, headers=headers, request_timeout=20),
                                           subprotocols=["bokeh", token])
        except HTTPClientError as e:
            return f"http {e.code}"
        try:
            msg = await asyncio.wait_for(conn.read_message(), 20)
        finally:
            conn.close()
        return "closed" if msg is None else "message"

    with ThreadPoolExecutor(1) as pool:  # its own event loop, away from Playwright's
        return pool.submit(asyncio.run, go()).result(timeout=60)


def _page_token(html: str) -> str:
    m = re.search(r'"token"\s*:\s*"([^"]+)"', html) or re.search(r"token\s*=\s*['\"]([^'\"]+)", html)
    assert m, html[:2000]
    return m.group(1)


def test_basic_auth_on_network_address(browser, shots, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    pw = tmp_path / "users.txt"
    pw.write_text("".join(f"{u}:{p}\n" for u, p in USERS.items()))
    host = _network_host()
    proc, base = start_server(home, host=host, args=["--address", "0.0.0.0", "--basic-auth", str(pw),
                                                     "--allow-user", "alice"])
    try:
        # no cookie: the page and the autoload script send to the login; the websocket handshake is refused
        for path in ("/", "/autoload.js?bokeh-autoload-element=x"):
            status, headers, body = _request(base, path)
            assert status == 302 and urllib.parse.urlsplit(headers["location"]).path.endswith("/login"), (path, status)
            assert "kdlab-app" not in body
        status, _, body = _request(base, "/login")
        assert status == 200 and 'name="password"' in body and "kdlab-app" not in body

        # a logged-in alice gets the page; its session token opens the websocket only with her cookie
        alice = _login_cookie(base, "alice", USERS["alice"])
        status, _, html = _request(base, "/", cookie=alice)
        assert status == 200
        token = _page_token(html)
        assert _websocket(base, token) == "http 403"
        assert _websocket(base, token, alice) == "message"
        # bob logs in but is not on --allow-user: no page, and a token he makes up (unsigned) is refused
        bob = _login_cookie(base, "bob", USERS["bob"])
        status, _, html = _request(base, "/", cookie=bob)
        assert status == 403 and "not authorized" in html.lower() and "kdlab-app" not in html
        from bokeh.util.token import generate_jwt_token, generate_session_id

        forged = generate_jwt_token(generate_session_id(secret_key=None, signed=False), secret_key=None, signed=False)
        assert _websocket(base, forged, bob) == "closed"

        # the browser: the login page, not the dashboard
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        page.goto(base)
        page.wait_for_url(re.compile(r"/login"), timeout=30_000)
        expect(page.locator("input[name=password]")).to_be_visible()
        assert page.locator(".kdlab-app").count() == 0 and "store" not in page.content()
        page.screenshot(path=str(shots / "auth_login.png"))

        # a wrong password stays out
        page.fill("input[name=username]", "alice")
        page.fill("input[name=password]", "wrong")
        page.click("button[type=submit]")
        expect(page.locator(".errormessage")).to_contain_text("Invalid username or password", timeout=30_000)
        assert "/login" in page.url and page.locator(".kdlab-app").count() == 0

        # the right one renders the dashboard, whose websocket works (a dynamic tab fills from the server)
        page.fill("input[name=username]", "alice")
        page.fill("input[name=password]", USERS["alice"])
        page.click("button[type=submit]")
        page.locator(".kdlab-launch button").wait_for(timeout=60_000)
        expect(page.locator(".kdlab-app")).to_contain_text(str(home))
        assert urllib.parse.urlsplit(page.url).hostname == host
        page.locator(".bk-tab", has_text="Compare").first.click()
        page.locator(".kdlab-compare-runs, .kdlab-compare-empty").first.wait_for(timeout=30_000)
        page.locator(".bk-tab", has_text="Runs").first.click()
        page.wait_for_timeout(800)
        page.screenshot(path=str(shots / "auth_dashboard.png"))
        page.close()
    finally:
        stop_server(proc)
