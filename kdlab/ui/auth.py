"""Who may reach the served dashboard: loopback needs nothing, any other address needs Panel's authentication.

The dashboard launches and cancels runs and reads every run in the store, so ``kdlab serve`` refuses to listen
on a non-loopback address (``0.0.0.0``, ``::``, a LAN IP, a host name) unless a login is configured, either

- Panel's basic auth: ``--basic-auth FILE`` (or env ``KDLAB_BASIC_AUTH``); the file holds ``user:password``
  lines or Panel's JSON ``{"user": "password"}``; ``user:password`` itself is accepted too but then shows in
  the process list; or
- one of Panel's OAuth providers: ``--oauth-provider NAME`` (env ``KDLAB_OAUTH_PROVIDER``) with env
  ``KDLAB_OAUTH_KEY`` / ``KDLAB_OAUTH_SECRET`` (``--oauth-key`` also works: the key is a public id), optional
  ``--oauth-redirect-uri``, ``--oauth-extra-params JSON`` and env ``KDLAB_OAUTH_ENCRYPTION_KEY``.

``--allow-user NAME`` (env ``KDLAB_ALLOWED_USERS``, comma-separated) narrows who, once logged in, gets the
dashboard. Cookies are signed with env ``KDLAB_COOKIE_SECRET`` or, if unset, a secret drawn per start (logins
then last until the server restarts). With auth on, Bokeh session tokens are signed too, so a logged-in user
the authorization refused cannot forge one for the websocket.

``serve_settings(...)`` turns flags and environment into a ``ServeSettings`` (the ``pn.serve`` keyword
arguments, notes to print) or raises ``ConfigError`` naming the flag; it reads no network and starts nothing.
``configure_panel(settings)`` installs the process-wide pieces ``pn.serve`` does not take.
"""
from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import os
import secrets
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdlab.errors import ConfigError

#: Host names that always mean the local machine (other names may resolve anywhere: they count as exposed).
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
#: Providers of ``--oauth-provider`` that need no ``KDLAB_OAUTH_KEY`` / no ``KDLAB_OAUTH_SECRET``.
NO_KEY_PROVIDERS = frozenset({"pam"})
NO_SECRET_PROVIDERS = frozenset({"pam", "auth_code"})

#: the basic-auth login page (offline: no CDN logo, unlike Panel's default)
LOGIN_PAGE = Path(__file__).with_name("login.html")
ENABLE_HINT = ("enable a login with --basic-auth FILE (lines 'user:password'; or env KDLAB_BASIC_AUTH=FILE or "
               "=user:password), or --oauth-provider NAME with env KDLAB_OAUTH_KEY and KDLAB_OAUTH_SECRET "
               "(see `kdlab serve --help`), or serve on 127.0.0.1 and reach it through an SSH tunnel")


def _host(address: str) -> str:
    a = (address or "").strip().lower()
    if a.startswith("[") and a.endswith("]"):  # [::1]
        a = a[1:-1]
    return a.split("%", 1)[0]  # fe80::1%eth0


def is_loopback(address: str | None) -> bool:
    """Whether ``address`` only listens on this machine: ``localhost``, ``127.0.0.0/8``, ``::1`` (also as
    ``[::1]`` or IPv4-mapped ``::ffff:127.x``). ``0.0.0.0``, ``::``, ``""`` (all interfaces), any other IP and
    any other host name are not (a name is not resolved: it may point anywhere)."""
    a = _host(address or "")
    if a in LOOPBACK_NAMES:
        return True
    try:
        ip = ipaddress.ip_address(a)
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool((mapped or ip).is_loopback)


def is_wildcard(address: str | None) -> bool:
    """Whether ``address`` means every interface (``0.0.0.0``, ``::``, empty)."""
    a = _host(address or "")
    try:
        return a == "" or ipaddress.ip_address(a).is_unspecified
    except ValueError:
        return False


def oauth_providers() -> list[str]:
    """The names ``--oauth-provider`` accepts: Panel's ``AUTH_PROVIDERS`` (plus plugins registered with it)."""
    from panel.auth import AUTH_PROVIDERS

    return sorted(AUTH_PROVIDERS)


def refusal(address: str) -> ConfigError:
    """The error of serving on a non-loopback ``address`` without a login."""
    return ConfigError.at("--address", f"{address!r} is reachable from other machines and the dashboard launches, "
                          f"cancels and reads every run: refusing to serve it without authentication; {ENABLE_HINT}")


# --------------------------------------------------------------------------------------------- settings

@dataclass
class ServeSettings:
    """What ``serve`` needs beyond port and address: ``kwargs`` for ``pn.serve``, the process-wide Panel
    settings (``encryption_key``, ``allowed_users``) and one-line ``notes`` for the console."""

    auth: str = "none"  # "none" | "basic" | "oauth"
    kwargs: dict[str, Any] = field(default_factory=dict)
    encryption_key: bytes | None = None
    allowed_users: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        if self.auth == "basic":
            return "basic auth (log in at /login)"
        if self.auth == "oauth":
            return f"OAuth via {self.kwargs['oauth_provider']} (log in at /login)"
        return "no login"


def _pick(flag_value: Any, env: Mapping[str, str], var: str, flag: str) -> tuple[Any, str]:
    """The flag's value if given, else the environment variable's; with the name to quote in errors."""
    if flag_value not in (None, "", (), []):
        return flag_value, flag
    value = env.get(var, "").strip()
    return (value or None), var


def _credentials_file(path: Path, where: str) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError.at(where, f"cannot read the password file {str(path)!r}: {e}") from None
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as e:
            raise ConfigError.at(where, f"{str(path)!r} is not valid JSON ({e.msg}, line {e.lineno})") from None
        if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
            raise ConfigError.at(where, f"{str(path)!r} must map user names to password strings")
        users = data
    else:
        users = {}
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            user, sep, password = line.partition(":")  # the password verbatim, spaces included
            if not sep:
                raise ConfigError.at(where, f"{str(path)!r} line {n}: expected 'user:password'")
            users[user.strip()] = password
    bad = [u for u, p in users.items() if not u or not p]
    if bad or not users:
        raise ConfigError.at(where, f"{str(path)!r} must list at least one user, each with a non-empty name and "
                             "password ('user:password' lines or JSON {\"user\": \"password\"})")
    return users


def parse_basic_auth(value: str, where: str = "--basic-auth") -> tuple[dict[str, str], bool]:
    """``value`` (a file of ``user:password`` lines / Panel's JSON, or ``user:password`` itself) as
    ``{user: password}``, and whether the password was given inline. The password never enters a message."""
    path = Path(os.path.expanduser(value))
    if path.is_file():
        return _credentials_file(path, where), False
    user, sep, password = value.partition(":")
    if sep and user and password and not path.exists():
        return {user: password}, True
    if sep:
        raise ConfigError.at(where, "expected a password file or 'user:password' with a non-empty user and password")
    shown = f" {value!r}" if where.startswith("--") else ""  # a mistyped password in the environment stays hidden
    raise ConfigError.at(where, f"no such password file{shown} (give a file of 'user:password' lines, "
                         "or 'user:password')")


def _encryption_key(value: str | None, where: str) -> bytes:
    if not value:
        try:
            from cryptography.fernet import Fernet
        except ImportError:
            raise ConfigError.at(where, "OAuth needs the cryptography package (pip install cryptography)") from None
        return Fernet.generate_key()
    try:
        raw = base64.urlsafe_b64decode(value.encode("ascii"))
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raw = b""
    if len(raw) != 32:
        raise ConfigError.at(where, "must be 32 url-safe base64-encoded bytes (make one with `panel oauth-secret`)")
    return value.encode("ascii")


def serve_settings(address: str, *, basic_auth: str | None = None, oauth_provider: str | None = None,
                   oauth_key: str | None = None, oauth_redirect_uri: str | None = None,
                   oauth_extra_params: str | Mapping[str, Any] | None = None, allow_users: Iterable[str] = (),
                   ssl_certfile: str | None = None, ssl_keyfile: str | None = None,
                   environ: Mapping[str, str] | None = None) -> ServeSettings:
    """The auth (and TLS) part of serving on ``address``, from flags, then ``KDLAB_*`` variables of ``environ``
    (default ``os.environ``). Raises ``ConfigError`` naming the flag or variable: for a non-loopback address
    without a login, an unreadable password file, an unknown provider (listing Panel's), a missing key."""
    env = os.environ if environ is None else environ
    s = ServeSettings()
    basic, basic_where = _pick(basic_auth, env, "KDLAB_BASIC_AUTH", "--basic-auth")
    provider, provider_where = _pick(oauth_provider, env, "KDLAB_OAUTH_PROVIDER", "--oauth-provider")
    if basic and provider:
        raise ConfigError.at(provider_where, f"choose one login: {basic_where} (basic auth) or {provider_where} "
                             "(OAuth), not both")
    if basic:
        users, inline = parse_basic_auth(str(basic), basic_where)
        s.auth, s.kwargs["basic_auth"] = "basic", users
        s.kwargs["basic_login_template"] = str(LOGIN_PAGE)
        if inline and basic_where == "--basic-auth":
            s.notes.append("note: a password given on the command line is visible to other users of this machine "
                           "(ps); prefer --basic-auth FILE or env KDLAB_BASIC_AUTH")
    elif provider:
        s.auth = "oauth"
        s.kwargs.update(_oauth_kwargs(str(provider).strip().lower(), provider_where, oauth_key, oauth_redirect_uri,
                                      oauth_extra_params, env))
        if s.kwargs["oauth_provider"] != "pam":
            s.encryption_key = _encryption_key(env.get("KDLAB_OAUTH_ENCRYPTION_KEY", "").strip() or None,
                                               "KDLAB_OAUTH_ENCRYPTION_KEY")
    elif not is_loopback(address):
        raise refusal(address)

    users_value, users_where = _pick(list(allow_users), env, "KDLAB_ALLOWED_USERS", "--allow-user")
    if users_value:
        names = users_value.split(",") if isinstance(users_value, str) else list(users_value)
        s.allowed_users = tuple(dict.fromkeys(n.strip() for n in names if n.strip()))
        if s.auth == "none":
            raise ConfigError.at(users_where, "only applies with a login (--basic-auth or --oauth-provider)")
        if s.auth == "basic":
            unknown = [u for u in s.allowed_users if u not in s.kwargs["basic_auth"]]
            if unknown:
                raise ConfigError.at(users_where, f"{', '.join(unknown)} not in the password file "
                                     f"(its users: {', '.join(sorted(s.kwargs['basic_auth']))})")
    elif s.auth == "oauth" and s.kwargs["oauth_provider"] != "pam":
        s.notes.append(f"note: any account of {s.kwargs['oauth_provider']} that can log in gets the dashboard; "
                       "narrow it with --allow-user NAME (or env KDLAB_ALLOWED_USERS)")

    if s.auth != "none":
        s.kwargs["cookie_secret"] = env.get("KDLAB_COOKIE_SECRET", "").strip() or secrets.token_urlsafe(32)
        # signed Bokeh session ids/tokens: the websocket only accepts tokens the (authorizing) page handed out
        s.kwargs["sign_sessions"] = True
        s.kwargs["secret_key"] = secrets.token_urlsafe(32).encode("ascii")

    if ssl_certfile or ssl_keyfile:
        if not ssl_certfile:
            raise ConfigError.at("--ssl-keyfile", "needs --ssl-certfile too")
        for flag, value in (("--ssl-certfile", ssl_certfile), ("--ssl-keyfile", ssl_keyfile)):
            if value and not Path(value).is_file():
                raise ConfigError.at(flag, f"no such file {value!r}")
        s.kwargs["ssl_certfile"] = ssl_certfile
        if ssl_keyfile:
            s.kwargs["ssl_keyfile"] = ssl_keyfile
    elif s.auth != "none" and not is_loopback(address):
        s.notes.append("note: plain HTTP: passwords and session cookies cross the network unencrypted; use "
                       "--ssl-certfile/--ssl-keyfile or a TLS reverse proxy beyond a trusted network")
    return s


def _oauth_kwargs(provider: str, where: str, key: str | None, redirect_uri: str | None,
                  extra: str | Mapping[str, Any] | None, env: Mapping[str, str]) -> dict[str, Any]:
    known = oauth_providers()
    if provider not in known:
        raise ConfigError.at(where, f"unknown OAuth provider {provider!r}. Valid: {', '.join(known)}", known)
    out: dict[str, Any] = {"oauth_provider": provider}
    key, key_where = _pick(key, env, "KDLAB_OAUTH_KEY", "--oauth-key")
    secret = env.get("KDLAB_OAUTH_SECRET", "").strip() or None
    if not key and provider not in NO_KEY_PROVIDERS:
        raise ConfigError.at("KDLAB_OAUTH_KEY", f"OAuth provider {provider!r} needs the client id of the app "
                             "registered with it: env KDLAB_OAUTH_KEY or --oauth-key")
    if not secret and provider not in NO_SECRET_PROVIDERS:
        raise ConfigError.at("KDLAB_OAUTH_SECRET", f"OAuth provider {provider!r} needs the client secret of the "
                             "app registered with it in env KDLAB_OAUTH_SECRET")
    if provider == "pam":
        try:
            import pamela  # noqa: F401
        except ImportError:
            raise ConfigError.at(where, "provider 'pam' needs the pamela package (pip install pamela)") from None
    if key:
        out["oauth_key"] = key
    if secret:
        out["oauth_secret"] = secret
    redirect_uri, _ = _pick(redirect_uri, env, "KDLAB_OAUTH_REDIRECT_URI", "--oauth-redirect-uri")
    if redirect_uri:
        out["oauth_redirect_uri"] = redirect_uri
    extra, extra_where = _pick(extra, env, "KDLAB_OAUTH_EXTRA_PARAMS", "--oauth-extra-params")
    if extra:
        if isinstance(extra, str):
            try:
                extra = json.loads(extra)
            except json.JSONDecodeError as e:
                raise ConfigError.at(extra_where, f"not valid JSON: {e.msg}") from None
        if not isinstance(extra, Mapping):
            raise ConfigError.at(extra_where, 'must be a JSON object, e.g. \'{"tenant": "..."}\'')
        out["oauth_extra_params"] = dict(extra)
    return out


def configure_panel(settings: ServeSettings) -> None:
    """Install what ``pn.serve`` takes no argument for: the OAuth encryption of cookies/tokens
    (``state.encryption``) and the ``--allow-user`` authorization. Process-wide; call before ``pn.serve``."""
    import panel as pn

    if settings.encryption_key is not None:
        from cryptography.fernet import Fernet

        pn.config.oauth_encryption_key = settings.encryption_key
        pn.state.encryption = Fernet(settings.encryption_key)
    if settings.allowed_users:
        allowed = frozenset(settings.allowed_users)

        def authorize(user_info: dict | None) -> bool:
            return pn.state.user in allowed

        pn.config.authorize_callback = authorize


# ------------------------------------------------------------------------------------------ websocket origins

def local_addresses() -> list[str]:
    """This machine's names and non-loopback IPv4 addresses (best effort, nothing is sent): the hosts a
    browser elsewhere may use to reach a server bound to every interface."""
    names: list[str] = []
    for name in (socket.gethostname(), socket.getfqdn()):
        if name and name not in names and not is_loopback(name):
            names.append(name)
    ips: list[str] = []
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            ips.append(str(info[4][0]))
    except OSError:
        pass
    for probe in ("10.255.255.255", "192.0.2.255"):  # a UDP "connect" only picks the outgoing interface
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.connect((probe, 1))
                ips.append(s.getsockname()[0])
        except OSError:
            pass
    return list(dict.fromkeys([*names, *(ip for ip in ips if not is_loopback(ip))]))


def websocket_origins(address: str, port: int, extra: Iterable[str] = ()) -> list[str]:
    """``host:port`` entries Bokeh accepts as the websocket's Origin: ``address`` itself (unless a bare IPv6
    literal, which Bokeh's list cannot hold), localhost, and for a wildcard address this machine's names and
    IPs; ``extra`` (``--allow-origin``) entries without a port get ``port``."""
    hosts = [f"localhost:{port}", f"127.0.0.1:{port}"]
    a = _host(address)
    if a and ":" not in a:
        hosts.insert(0, f"{a}:{port}")
    if is_wildcard(address):
        hosts += [f"{h}:{port}" for h in local_addresses()]
    for origin in extra:
        origin = origin.strip().removeprefix("http://").removeprefix("https://").rstrip("/")
        if origin:
            hosts.append(origin if ":" in origin else f"{origin}:{port}")
    return list(dict.fromkeys(hosts))
