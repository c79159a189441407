"""Auth of the served dashboard (kdlab.ui.auth): loopback needs nothing, any other address a login.

The browser test (a real server on 0.0.0.0 behind basic auth) is tests/dashboard/test_auth_browser.py, beside the
browser fixtures."""
from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys

import pytest

from kdlab.errors import ConfigError
from kdlab.ui import auth
from kdlab.ui.auth import is_loopback, is_wildcard, parse_basic_auth, serve_settings, websocket_origins

NO_ENV: dict[str, str] = {}


@pytest.mark.parametrize("address", ["127.0.0.1", "127.1.2.3", "localhost", "LOCALHOST", "::1", "[::1]",
                                     "::ffff:127.0.0.1", "0:0:0:0:0:0:0:1"])
def test_loopback_addresses(address):
    assert is_loopback(address)


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "", "192.168.1.5", "10.0.0.1", "fe80::1%eth0", "2001:db8::1",
                                     "example.org", "my-host", "128.0.0.1", "::ffff:10.0.0.1", None])
def test_non_loopback_addresses(address):
    assert not is_loopback(address)


def test_wildcards():
    assert is_wildcard("0.0.0.0") and is_wildcard("::") and is_wildcard("")
    assert not is_wildcard("192.168.1.5") and not is_wildcard("127.0.0.1") and not is_wildcard("my-host")


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "192.168.1.5", "my-host"])
def test_refuses_non_loopback_without_auth(address):
    with pytest.raises(ConfigError) as e:
        serve_settings(address, environ=NO_ENV)
    msg = str(e.value)
    assert msg.startswith("--address: ") and "\n" not in msg
    for hint in ("--basic-auth", "KDLAB_BASIC_AUTH", "--oauth-provider", "KDLAB_OAUTH_KEY", "KDLAB_OAUTH_SECRET"):
        assert hint in msg
    assert e.value.issues[0].where == "--address"


@pytest.mark.parametrize("address", ["127.0.0.1", "localhost", "::1"])
def test_loopback_needs_nothing(address):
    s = serve_settings(address, environ=NO_ENV)
    assert s.auth == "none" and s.kwargs == {} and s.notes == []


def test_basic_auth_file_lines_and_json(tmp_path):
    lines = tmp_path / "pw.txt"
    lines.write_text("# users\nalice:s3cret:with:colons\n\nbob: two words \n")
    assert parse_basic_auth(str(lines)) == ({"alice": "s3cret:with:colons", "bob": " two words "}, False)
    js = tmp_path / "pw.json"
    js.write_text(json.dumps({"carol": "pw"}))
    s = serve_settings("0.0.0.0", basic_auth=str(js), environ=NO_ENV)
    assert s.auth == "basic" and s.kwargs["basic_auth"] == {"carol": "pw"}
    assert len(s.kwargs["cookie_secret"]) >= 32 and s.kwargs["sign_sessions"] is True
    assert any("plain HTTP" in n for n in s.notes) and not any("command line" in n for n in s.notes)


def test_basic_auth_inline_warns_and_env_does_not():
    s = serve_settings("0.0.0.0", basic_auth="alice:pw", environ=NO_ENV)
    assert s.kwargs["basic_auth"] == {"alice": "pw"} and any("command line" in n for n in s.notes)
    s = serve_settings("0.0.0.0", environ={"KDLAB_BASIC_AUTH": "alice:pw"})
    assert s.kwargs["basic_auth"] == {"alice": "pw"} and not any("command line" in n for n in s.notes)


def test_flag_wins_over_env(tmp_path):
    s = serve_settings("0.0.0.0", basic_auth="flag:pw", environ={"KDLAB_BASIC_AUTH": "env:pw"})
    assert s.kwargs["basic_auth"] == {"flag": "pw"}


@pytest.mark.parametrize("value, where, expected", [
    ("/no/such/file", "--basic-auth", "no such password file '/no/such/file'"),
    ("hunter2", "KDLAB_BASIC_AUTH", "no such password file (give"),
    ("alice:", "--basic-auth", "non-empty user and password"),
    (":pw", "--basic-auth", "non-empty user and password"),
])
def test_basic_auth_errors_name_the_source(value, where, expected):
    kwargs = {"basic_auth": value} if where == "--basic-auth" else {}
    with pytest.raises(ConfigError) as e:
        serve_settings("0.0.0.0", environ={"KDLAB_BASIC_AUTH": value} if where != "--basic-auth" else {}, **kwargs)
    assert str(e.value).startswith(f"{where}: ") and expected in str(e.value)
    if not value.startswith("/"):
        assert value not in str(e.value)  # what may be a password is not echoed


def test_bad_password_files(tmp_path):
    for text, expected in [("", "at least one user"), ("nocolon\n", "line 1: expected 'user:password'"),
                           ('{"a": 1}', "password strings"), ("{oops", "not valid JSON"), ("bob:\n", "non-empty")]:
        f = tmp_path / "pw"
        f.write_text(text)
        with pytest.raises(ConfigError, match=expected):
            serve_settings("0.0.0.0", basic_auth=str(f), environ=NO_ENV)


def test_cookie_secret_from_env_or_fresh():
    a = serve_settings("0.0.0.0", basic_auth="u:p", environ=NO_ENV).kwargs["cookie_secret"]
    b = serve_settings("0.0.0.0", basic_auth="u:p", environ=NO_ENV).kwargs["cookie_secret"]
    assert a != b
    kept = serve_settings("0.0.0.0", basic_auth="u:p", environ={"KDLAB_COOKIE_SECRET": "x" * 40})
    assert kept.kwargs["cookie_secret"] == "x" * 40


def test_optional_auth_on_loopback():
    s = serve_settings("127.0.0.1", basic_auth="u:p", environ=NO_ENV)
    assert s.auth == "basic" and not any("plain HTTP" in n for n in s.notes)


def test_unknown_oauth_provider_lists_panels():
    with pytest.raises(ConfigError) as e:
        serve_settings("0.0.0.0", oauth_provider="githbu", environ=NO_ENV)
    msg = str(e.value)
    assert msg.startswith("--oauth-provider: unknown OAuth provider 'githbu'")
    for name in ("github", "google", "azure", "okta", "generic"):
        assert name in msg and name in e.value.issues[0].choices


def test_oauth_from_env():
    key = base64.urlsafe_b64encode(os.urandom(32)).decode()
    env = {"KDLAB_OAUTH_PROVIDER": "GitHub", "KDLAB_OAUTH_KEY": "id123", "KDLAB_OAUTH_SECRET": "sec",
           "KDLAB_OAUTH_ENCRYPTION_KEY": key, "KDLAB_OAUTH_EXTRA_PARAMS": '{"tenant": "t1"}',
           "KDLAB_ALLOWED_USERS": "alice, bob,,alice"}
    s = serve_settings("0.0.0.0", environ=env)
    assert s.auth == "oauth" and s.encryption_key == key.encode()
    assert {k: s.kwargs[k] for k in ("oauth_provider", "oauth_key", "oauth_secret", "oauth_extra_params")} == {
        "oauth_provider": "github", "oauth_key": "id123", "oauth_secret": "sec", "oauth_extra_params": {"tenant": "t1"}}
    assert s.allowed_users == ("alice", "bob") and "cookie_secret" in s.kwargs
    assert "OAuth via github" in s.describe()


def test_oauth_needs_key_and_secret_and_warns_without_allow_list():
    with pytest.raises(ConfigError, match=r"^KDLAB_OAUTH_KEY: .*github"):
        serve_settings("0.0.0.0", oauth_provider="github", environ=NO_ENV)
    with pytest.raises(ConfigError, match=r"^KDLAB_OAUTH_SECRET: "):
        serve_settings("0.0.0.0", oauth_provider="github", oauth_key="id", environ=NO_ENV)
    s = serve_settings("0.0.0.0", oauth_provider="github", oauth_key="id", environ={"KDLAB_OAUTH_SECRET": "s"})
    assert s.encryption_key is not None  # generated for this start
    assert any("--allow-user" in n for n in s.notes)


def test_oauth_setting_errors():
    env = {"KDLAB_OAUTH_KEY": "id", "KDLAB_OAUTH_SECRET": "s"}
    with pytest.raises(ConfigError, match="^KDLAB_OAUTH_ENCRYPTION_KEY: must be 32"):
        serve_settings("0.0.0.0", oauth_provider="google", environ={**env, "KDLAB_OAUTH_ENCRYPTION_KEY": "short"})
    with pytest.raises(ConfigError, match="^--oauth-extra-params: not valid JSON"):
        serve_settings("0.0.0.0", oauth_provider="google", oauth_extra_params="{x", environ=env)
    with pytest.raises(ConfigError, match="^--oauth-extra-params: must be a JSON object"):
        serve_settings("0.0.0.0", oauth_provider="google", oauth_extra_params="[1]", environ=env)
    with pytest.raises(ConfigError, match="^--oauth-provider: choose one login"):
        serve_settings("0.0.0.0", basic_auth="u:p", oauth_provider="google", environ=env)


def test_allow_users():
    with pytest.raises(ConfigError, match="^--allow-user: only applies with a login"):
        serve_settings("127.0.0.1", allow_users=["alice"], environ=NO_ENV)
    with pytest.raises(ConfigError, match="^--allow-user: carol not in the password file"):
        serve_settings("0.0.0.0", basic_auth="alice:pw", allow_users=["carol"], environ=NO_ENV)
    assert serve_settings("0.0.0.0", basic_auth="alice:pw", allow_users=["alice"],
                          environ=NO_ENV).allowed_users == ("alice",)


def test_tls_files(tmp_path):
    with pytest.raises(ConfigError, match="^--ssl-certfile: no such file"):
        serve_settings("0.0.0.0", basic_auth="u:p", ssl_certfile=str(tmp_path / "c.pem"), environ=NO_ENV)
    with pytest.raises(ConfigError, match="^--ssl-keyfile: needs --ssl-certfile"):
        serve_settings("0.0.0.0", basic_auth="u:p", ssl_keyfile="k.pem", environ=NO_ENV)
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("c"), key.write_text("k")
    s = serve_settings("0.0.0.0", basic_auth="u:p", ssl_certfile=str(cert), ssl_keyfile=str(key), environ=NO_ENV)
    assert s.kwargs["ssl_certfile"] == str(cert) and not any("plain HTTP" in n for n in s.notes)


def test_websocket_origins(monkeypatch):
    monkeypatch.setattr(auth, "local_addresses", lambda: ["vm", "192.0.2.7"])
    assert websocket_origins("127.0.0.1", 5006) == ["127.0.0.1:5006", "localhost:5006"]
    wild = websocket_origins("0.0.0.0", 81, ["https://kd.example.org/", "proxy:443"])
    assert wild[0] == "0.0.0.0:81" and {"vm:81", "192.0.2.7:81", "kd.example.org:81", "proxy:443"} <= set(wild)
    assert websocket_origins("::1", 5006) == ["localhost:5006", "127.0.0.1:5006"]  # Bokeh's list holds no IPv6
    assert "192.168.1.5:5006" in websocket_origins("192.168.1.5", 5006)


def test_local_addresses_are_not_loopback_ips():
    found = auth.local_addresses()
    assert socket.gethostname() in found
    assert not any(is_loopback(a) for a in found)


def test_serve_refuses_before_listening(monkeypatch):
    """``dashboard.serve`` raises before pn.serve is reached (nothing binds the port)."""
    import panel as pn

    from kdlab.ui import dashboard

    for var in ("KDLAB_BASIC_AUTH", "KDLAB_OAUTH_PROVIDER"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(pn, "serve", lambda *a, **k: pytest.fail("pn.serve was called"))
    with pytest.raises(ConfigError, match="refusing to serve"):
        dashboard.serve(port=1, address="0.0.0.0")


def test_serve_passes_auth_to_panel(monkeypatch, tmp_path, capsys):
    import panel as pn

    from kdlab.ui import dashboard

    calls = []
    monkeypatch.setattr(pn, "serve", lambda apps, **kw: calls.append(kw))
    monkeypatch.delenv("KDLAB_ALLOWED_USERS", raising=False)
    monkeypatch.setenv("KDLAB_HOME", str(tmp_path / "s"))  # restored after the test
    dashboard.serve(port=5123, address="0.0.0.0", basic_auth="alice:pw")
    kw = calls[0]
    assert kw["basic_auth"] == {"alice": "pw"} and kw["address"] == "0.0.0.0" and kw["sign_sessions"]
    assert "0.0.0.0:5123" in kw["websocket_origin"] and "localhost:5123" in kw["websocket_origin"]
    out = capsys.readouterr().out
    assert "http://0.0.0.0:5123/" in out and "basic auth" in out and "pw" not in out.replace("alice", "")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]


def test_cli_refuses_without_auth(tmp_path):
    """`kdlab serve --address 0.0.0.0` without a login: one error line, exit 2, and the port was never bound."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KDLAB_BASIC", "KDLAB_OAUTH"))}
    env["KDLAB_HOME"] = str(tmp_path / "home")
    proc = subprocess.Popen([sys.executable, "-m", "kdlab.cli", "serve", "--address", "0.0.0.0", "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kdlab: error: --address: '0.0.0.0'"), err
    assert "--basic-auth" in lines[0] and "KDLAB_OAUTH_KEY" in lines[0]
    assert "kdlab dashboard:" not in out and "Launching server" not in out
    assert not (tmp_path / "home").exists()  # refused before even opening the store
