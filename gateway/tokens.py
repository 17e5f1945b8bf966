"""OAuth 2.0 tokens at the edge: HTTP to the authorization server, the encrypted store.

Owns: talking to token and device-authorization endpoints (stdlib urllib, with timeouts:
network trouble and 5xx are `TemporaryError`, `invalid_grant` is `LoginRequired`, a bad
client registration is `ConfigError`); the device authorization grant behind
`sla-gateway login` (RFC 8628); keeping each mailbox's refresh and access tokens in the
`oauth_tokens` table encrypted with Fernet, under a key read from the environment or a
systemd credential (`[oauth]`); handing IMAP and SMTP a fresh access token, refreshed
ahead of expiry and stored again every time (Microsoft rotates refresh tokens); and, the
first time a refresh token is refused, recording it and telling the owner once. Tokens
never reach a log line, an event, an alert or an error message. The rules themselves
(when to refresh, what an error means, the SASL strings) live in the pure `oauth` module.
"""

from __future__ import annotations

import html
import http.server
import json
import logging
import os
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any

from . import oauth, store
from .config import Config, ImapConfig, InboxConfig, OAuthConfig, Secret
from .errors import ConfigError, LoginRequired, Problem, TemporaryError
from .oauth import DeviceCode, Grant, Outcome, ServerError
from .store import Engine

log = logging.getLogger("sla_gateway.oauth")

HTTP_TIMEOUT = 30.0
ACTIVE = "active"
LOGIN_REQUIRED = "login-required"

Clock = Callable[[], datetime]


# ---------------------------------------------------------------------------- HTTP


def post_form(url: str, form: Mapping[str, str], timeout: float = HTTP_TIMEOUT) -> tuple[int, dict[str, Any]]:
    """POST a form, read a JSON answer: (status, body). Network trouble, 5xx and answers
    that are not JSON are TemporaryError; the form (which holds secrets) is never shown."""
    host = urllib.parse.urlsplit(url).netloc
    request = urllib.request.Request(
        url,
        data=urllib.parse.urlencode(form).encode("ascii"),
        headers={"Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded",
                 "User-Agent": "sla-gateway"},
        method="POST",
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        status, raw = int(exc.code), exc.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise TemporaryError(f"cannot reach the authorization server {host}: {reason}") from None
    if status >= 500:
        raise TemporaryError(f"the authorization server {host} answered HTTP {status}; will retry")
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise TemporaryError(
            f"the authorization server {host} answered HTTP {status} without JSON"
        ) from None
    if not isinstance(body, dict):
        raise TemporaryError(f"the authorization server {host} answered an unexpected JSON value")
    return status, body


# ---------------------------------------------------------------------------- keys


def read_key(secret: Secret, environ: Mapping[str, str] | None = None) -> Any:
    """The Fernet key that encrypts stored tokens; ConfigError naming the key if absent/bad."""
    from cryptography.fernet import Fernet

    env = os.environ if environ is None else environ
    where, key = _locate_key(secret, env)
    try:
        return Fernet(key.strip().encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise ConfigError([Problem("(config)", where, "is not a Fernet key (32 bytes, url-safe base64)",
                                   "make one with: python3 -c 'from cryptography.fernet import Fernet; "
                                   "print(Fernet.generate_key().decode())'")]) from None  # fmt: skip


def _locate_key(secret: Secret, env: Mapping[str, str]) -> tuple[str, str]:
    hint = "create one (see README: OAuth) and keep it out of the configuration file"
    if secret.file:
        from .secrets import credential_path

        path = credential_path(secret.file, env)
        try:
            return "oauth.token_key_file", path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError([Problem("(config)", "oauth.token_key_file",
                                       f"cannot read {path}: {exc.strerror}", hint)]) from None  # fmt: skip
    name = secret.env or ""
    value = env.get(name, "")
    if not value:
        raise ConfigError([Problem("(environment)", "oauth.token_key_env",
                                   f"${name} is not set or empty: it holds the key that encrypts OAuth tokens",
                                   f"export {name}=... (or set [oauth] token_key_file); {hint}")])  # fmt: skip
    return "oauth.token_key_env", value


# ---------------------------------------------------------------------------- state


@dataclass(frozen=True)
class TokenState:
    """What is known about one account's sign-in, without the tokens (for check/status)."""

    username: str
    label: str  # what to pass to `sla-gateway login`
    stored: bool
    status: str  # "active" / "login-required" / "none"
    obtained_at: datetime | None = None
    access_expires_at: datetime | None = None
    problem: str | None = None
    problem_at: datetime | None = None

    def describe(self, now: datetime, tz: tzinfo = UTC) -> str:
        """One line for `check` and `status`; its times in `tz` (the shop's, for status)."""
        if not self.stored:
            return f"no token: run `sla-gateway {login_command(self.label)}`"
        if self.status == LOGIN_REQUIRED:
            since = f" since {_when(self.problem_at, tz)}" if self.problem_at else ""
            return (f"sign-in needed{since} (refresh token refused: {self.problem}): "
                    f"run `sla-gateway {login_command(self.label)}`")  # fmt: skip
        access = "no access token yet"
        if self.access_expires_at is not None:
            verb = "valid until" if self.access_expires_at > now else "expired at"
            access = f"access token {verb} {_when(self.access_expires_at, tz)}"
        return f"signed in {_when(self.obtained_at, tz)}; {access}"


def login_command(label: str) -> str:
    return "login --send" if label == "--send" else f"login {label}"


def _when(moment: datetime | None, tz: tzinfo = UTC) -> str:
    return f"{moment.astimezone(tz).replace(microsecond=0):%Y-%m-%d %H:%M:%S %Z}" if moment else "?"


# ---------------------------------------------------------------------------- sources


class TokenSource:
    """One mailbox's access tokens. Thread-safe; the database row is the truth, so other
    processes (`check --connect`, a second login) see and reuse the same tokens."""

    def __init__(self, tokens: Tokens, oauth_config: OAuthConfig, username: str, label: str) -> None:  # fmt: skip
        self.tokens = tokens
        self.oauth = oauth_config
        self.username = username
        self.label = label  # inbox name, or "--send"
        self.account = oauth_config.account(username)

    # -- using ---------------------------------------------------------------------

    def access_token(self, *, force: bool = False) -> str:
        """A usable access token: the stored one unless it is near expiry (or `force`,
        after a server refused it), else a refreshed one. Raises LoginRequired,
        TemporaryError or ConfigError."""
        with self.tokens.lock(self.account):
            row = self._row()
            if row is None:
                raise LoginRequired(f"no OAuth token for {self.username}: run `sla-gateway {login_command(self.label)}`")  # fmt: skip
            if row.status == LOGIN_REQUIRED:
                raise LoginRequired(self._relogin_text(row.problem or "refused"))
            now = self.tokens.clock()
            fernet = self.tokens.fernet()
            if (not force and row.access_token and row.access_issued_at and row.access_expires_at
                    and not oauth.needs_refresh(row.access_issued_at, row.access_expires_at, now)):  # fmt: skip
                return str(self.tokens.decrypt(fernet, row.access_token))
            refresh_token = self.tokens.decrypt(fernet, row.refresh_token)
            return self._refresh(refresh_token, now, sealed=row.refresh_token)

    def state(self) -> TokenState:
        row = self._row()
        if row is None:
            return TokenState(self.username, self.label, False, "none")
        return TokenState(self.username, self.label, True, row.status, row.obtained_at,
                          row.access_expires_at, row.problem, row.problem_at)  # fmt: skip

    def _row(self) -> Any:
        with self.tokens.engine.connect() as conn:
            return store.token_row(conn, self.account)

    def _refresh(self, refresh_token: str, now: datetime, *, sealed: str | None = None) -> str:
        """Trade the refresh token for a new access token; `sealed` is the stored form of
        the refresh token used, so that a refusal marks only that sign-in broken (not one
        made meanwhile by `login`)."""
        status, body = post_form(self.oauth.token_url, self._refresh_form(refresh_token))
        if status != 200:
            error = oauth.error_of(status, body)
            if error.outcome is Outcome.REVOKED:
                self.tokens.login_required(self, str(error), sealed=sealed)
                raise LoginRequired(self._relogin_text(str(error)))
            raise _problem(error, self.oauth, self.label)
        try:
            grant = oauth.parse_grant(body, now)
        except oauth.BadAnswer as exc:
            raise TemporaryError(f"token refresh for {self.username}: {exc}") from None
        self.tokens.save(self, grant, now, refreshed=True)
        log.info("event=oauth-refreshed account=%s expires_at=%s rotated=%s", self.username,
                 grant.expires_at.isoformat(), grant.refresh_token is not None)  # fmt: skip
        return grant.access_token

    def _refresh_form(self, refresh_token: str) -> dict[str, str]:
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token, **self._client()}
        if self.oauth.provider == "microsoft" and self.oauth.scope:
            form["scope"] = self.oauth.scope  # Microsoft's v2 endpoint wants it again
        return form

    def _client(self) -> dict[str, str]:
        form = {"client_id": self.oauth.client_id}
        secret = self.oauth.client_secret
        if secret.env or secret.file:
            form["client_secret"] = self.tokens.client_secret(secret, self.label)
        return form

    def _relogin_text(self, why: str) -> str:
        return (f"the OAuth sign-in of {self.username} no longer works: the authorization server "
                f"refused the refresh token ({why}); the owner must sign in again: "
                f"run `sla-gateway {login_command(self.label)}`")  # fmt: skip

    # -- signing in (device authorization grant) -------------------------------------

    def start_device_login(self) -> DeviceCode:
        if not self.oauth.device_authorization_url:
            raise ConfigError([Problem("(config)", f"{self._prefix()}.device_authorization_url",
                                       "is not set, so there is no device sign-in",
                                       "sign in with `sla-gateway login --browser`, or set it")])  # fmt: skip
        form = dict(self._client())
        if self.oauth.scope:
            form["scope"] = self.oauth.scope
        status, body = post_form(self.oauth.device_authorization_url, form)
        if status != 200:
            error = oauth.error_of(status, body)
            if error.outcome is Outcome.SCOPE and self.oauth.provider == "google":
                raise ConfigError([Problem("(google)", f"{self._prefix()}.provider",
                    f"Google refuses the device sign-in for this client or scope ({error})",
                    "Google does not allow the mail scope in its device sign-in: sign in with "
                    f"`sla-gateway {login_command(self.label)} --browser` (README: OAuth, Google)")])  # fmt: skip
            raise _problem(error, self.oauth, self.label)
        try:
            return oauth.parse_device_code(body, self.tokens.clock())
        except oauth.BadAnswer as exc:
            raise TemporaryError(f"device sign-in: {exc}") from None

    def finish_device_login(self, device: DeviceCode, *, sleep: Callable[[float], None] = time.sleep) -> Grant:
        """Poll the token endpoint at the server's interval (slower after slow_down) until
        the owner approves, declines or the code expires; store and return the grant."""
        interval = device.interval
        form = {"grant_type": "urn:ietf:params:oauth:grant-type:device_code",
                "device_code": device.device_code, **self._client()}  # fmt: skip
        while True:
            if self.tokens.clock() >= device.expires_at:
                raise LoginRequired("the code expired before it was approved: run the login again")
            sleep(interval)
            status, body = post_form(self.oauth.token_url, form)
            if status == 200:
                break
            error = oauth.error_of(status, body)
            if error.outcome in (Outcome.PENDING, Outcome.SLOW_DOWN):
                interval = oauth.next_interval(interval, error.outcome)
                continue
            if error.outcome is Outcome.DENIED:
                raise LoginRequired(f"the sign-in was declined ({error}); nothing was stored")
            if error.outcome is Outcome.EXPIRED:
                raise LoginRequired(f"the code expired before it was approved ({error}): run the login again")
            raise _problem(error, self.oauth, self.label)
        return self._store_first(body)

    # -- signing in (authorization code with PKCE, to a loopback address) ---------------

    def browser_login(self, *, port: int, show: Callable[[oauth.BrowserRequest], None],
                      timeout: float = 600.0) -> Grant:  # fmt: skip
        """Listen on 127.0.0.1:`port` (0: any free port), `show` the owner the address to
        open, wait (at most `timeout` seconds) for the browser to come back with a code,
        trade it with its PKCE verifier for tokens, store them (RFC 6749 4.1, RFC 7636,
        RFC 8252 7.3). Works over SSH with a port forward; see README."""
        if not self.oauth.authorization_url:
            raise ConfigError([Problem("(config)", f"{self._prefix()}.authorization_url",
                                       "is not set, so there is no browser sign-in",
                                       "set it to the provider's authorization endpoint, or sign in "
                                       "without --browser")])  # fmt: skip
        state, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(48)
        answer: list[str | oauth.RedirectRefused] = []  # the first answer only
        answered = threading.Event()
        taking = threading.Lock()

        class Redirect(http.server.BaseHTTPRequestHandler):
            timeout = 30  # seconds an open connection may stay silent

            def do_GET(self) -> None:
                path, _, query = self.path.partition("?")
                with taking:
                    if path != "/" or answer:
                        self.send_error(404)
                        return
                    try:
                        answer.append(oauth.code_from_redirect(query, state))
                        text, status = "Signed in. You can close this tab and return to the terminal.", 200
                    except oauth.StrayRequest as exc:  # not this sign-in's answer: keep waiting
                        text, status = f"Not signed in: {exc}.", 400
                    except oauth.RedirectRefused as exc:
                        answer.append(exc)
                        text, status = f"Not signed in: {exc}. See the terminal.", 400
                    finished = bool(answer)
                body = f"<!doctype html><title>sla-gateway</title><p>{html.escape(text)}</p>\n".encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                finally:
                    if finished:  # the browser is told first, then the command
                        answered.set()

            def log_message(self, format: str, *args: Any) -> None:  # the query holds the code
                pass

        try:
            server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Redirect)
        except OSError as exc:
            raise TemporaryError(f"cannot listen on 127.0.0.1:{port} for the sign-in: {exc.strerror}; "
                                 "choose another --port") from None  # fmt: skip
        server.daemon_threads = True  # a connection per thread: an idle one blocks nothing
        listening = threading.Thread(target=server.serve_forever, args=(0.2,), daemon=True)
        listening.start()
        try:
            redirect_uri = f"http://127.0.0.1:{server.server_address[1]}/"
            request = oauth.browser_request(
                provider=self.oauth.provider, authorization_url=self.oauth.authorization_url,
                client_id=self.oauth.client_id, scope=self.oauth.scope, redirect_uri=redirect_uri,
                state=state, verifier=verifier, login_hint=self.username,
            )  # fmt: skip
            show(request)
            if not answered.wait(timeout):
                raise LoginRequired("no answer from the browser in time: run the login again")
        finally:
            server.shutdown()
            server.server_close()
        result = answer[0]
        if isinstance(result, oauth.RedirectRefused):
            raise LoginRequired(f"the sign-in did not complete ({result}); nothing was stored")
        form = {"grant_type": "authorization_code", "code": result, "redirect_uri": redirect_uri,
                "code_verifier": verifier, **self._client()}  # fmt: skip
        status, body = post_form(self.oauth.token_url, form)
        if status != 200:
            error = oauth.error_of(status, body)
            if error.outcome is Outcome.REVOKED:
                raise LoginRequired(f"the authorization server refused the code ({error}); run the login again")
            raise _problem(error, self.oauth, self.label)
        return self._store_first(body)

    def import_refresh_token(self, refresh_token: str) -> Grant:
        """Sign in with a refresh token obtained elsewhere: it is tried at once (a refresh),
        and stored only if the server accepts it."""
        status, body = post_form(self.oauth.token_url, self._refresh_form(refresh_token))
        if status != 200:
            error = oauth.error_of(status, body)
            if error.outcome is Outcome.REVOKED:
                raise LoginRequired(f"the authorization server refused that refresh token ({error}); nothing was stored")
            raise _problem(error, self.oauth, self.label)
        body = dict(body)
        body.setdefault("refresh_token", refresh_token)
        return self._store_first(body)

    def _store_first(self, body: Mapping[str, Any]) -> Grant:
        now = self.tokens.clock()
        try:
            grant = oauth.parse_grant(body, now)
        except oauth.BadAnswer as exc:
            raise TemporaryError(f"sign-in: {exc}") from None
        if grant.refresh_token is None:
            raise ConfigError([Problem("(authorization server)", f"{self._prefix()}.scope",
                                       "the server gave no refresh token, so the gateway could not stay signed in",
                                       'Microsoft needs "offline_access" in the scope; check the app registration')])  # fmt: skip
        self.tokens.save(self, grant, now, refreshed=False)
        log.info("event=oauth-signed-in account=%s", self.username)
        return grant

    def _prefix(self) -> str:
        return _config_prefix(self.label)


def _config_prefix(label: str) -> str:
    """Where an account's keys are, for messages: "send" or "inbox NAME: inbox.imap"."""
    return "send" if label == "--send" else f"inbox {label}: inbox.imap"


def _problem(error: ServerError, config: OAuthConfig, label: str) -> Exception:
    """A refusal that is not about the refresh token: configuration, or temporary."""
    prefix = _config_prefix(label)
    if error.outcome in (Outcome.CLIENT, Outcome.SCOPE):
        key = "scope" if error.outcome is Outcome.SCOPE else "client_id"
        return ConfigError([Problem(f"({config.provider} authorization server)", f"{prefix}.{key}",
                                    f"refused: {error}",
                                    "check client_id, the client secret and the app registration (README: OAuth)")])  # fmt: skip
    return TemporaryError(f"the authorization server refused for now ({error}); will retry")


class Tokens:
    """Every OAuth account of one configuration: hands out TokenSources, keeps one lock
    per account (so threads refresh one at a time), reads the encryption key once, and
    tells the owner once when a sign-in stops working."""

    def __init__(self, config: Config, engine: Engine, clock: Clock, *,
                 environ: Mapping[str, str] | None = None) -> None:  # fmt: skip
        self.config = config
        self.engine = engine
        self.clock = clock
        self.environ = environ
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._fernet: Any = None

    # -- finding accounts ------------------------------------------------------------

    def for_imap(self, inbox: InboxConfig) -> TokenSource:
        imap = inbox.imap
        if imap is None or imap.oauth is None:
            raise ValueError(f"inbox {inbox.name} does not use OAuth")
        return TokenSource(self, imap.oauth, imap.username, inbox.name)

    def for_send(self) -> TokenSource:
        send = self.config.send
        if send.oauth is None or not send.username:
            raise ValueError("[send] does not use OAuth")
        shared = self._inbox_sharing(send.oauth, send.username)
        return TokenSource(self, send.oauth, send.username, shared.name if shared else "--send")

    def sources(self) -> list[TokenSource]:
        """One source per distinct account the configuration signs in with."""
        found: dict[str, TokenSource] = {}
        for inbox in self.config.oauth_inboxes:
            source = self.for_imap(inbox)
            found.setdefault(source.account, source)
        if self.config.send.uses_oauth:
            source = self.for_send()
            found.setdefault(source.account, source)
        return list(found.values())

    def _inbox_sharing(self, config: OAuthConfig, username: str) -> InboxConfig | None:
        account = config.account(username)
        for inbox in self.config.inboxes:
            imap: ImapConfig | None = inbox.imap
            if imap is not None and imap.oauth is not None and imap.oauth.account(imap.username) == account:
                return inbox
        return None

    def is_sender(self, source: TokenSource) -> bool:
        send = self.config.send
        return (send.uses_oauth and send.oauth is not None and bool(send.username)
                and send.oauth.account(send.username or "") == source.account)  # fmt: skip

    # -- keys, locks -----------------------------------------------------------------

    def lock(self, account: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(account, threading.Lock())

    def fernet(self) -> Any:
        if self._fernet is None:
            self._fernet = read_key(self.config.oauth.key, self.environ)
        return self._fernet

    def decrypt(self, fernet: Any, value: str) -> str:
        from cryptography.fernet import InvalidToken

        try:
            return str(fernet.decrypt(value.encode("ascii")).decode("utf-8"))
        except InvalidToken:
            key = "oauth.token_key_file" if self.config.oauth.key.file else "oauth.token_key_env"
            raise ConfigError([Problem("(config)", key, "cannot decrypt the stored OAuth tokens (a different key?)",
                                       "restore the key they were stored with, or sign in again with `sla-gateway login`")]) from None  # fmt: skip

    def client_secret(self, secret: Secret, label: str) -> str:
        from .secrets import read_secret

        return read_secret(secret, _config_prefix(label), self.environ, env_key="client_secret_env", file_key="client_secret_file")

    # -- writing ---------------------------------------------------------------------

    def save(self, source: TokenSource, grant: Grant, now: datetime, *, refreshed: bool) -> None:
        """Store a grant (encrypted). A refresh keeps the old refresh token unless the
        server sent a new one; a sign-in replaces everything and clears any problem."""
        fernet = self.fernet()

        def seal(value: str) -> str:
            return str(fernet.encrypt(value.encode("utf-8")).decode("ascii"))

        values: dict[str, Any] = {"access_token": seal(grant.access_token), "access_issued_at": grant.issued_at,
                                  "access_expires_at": grant.expires_at}  # fmt: skip
        if grant.refresh_token is not None:
            values["refresh_token"] = seal(grant.refresh_token)
        if grant.scope:
            values["scope"] = grant.scope
        with store.begin(self.engine) as conn:
            if refreshed:
                values["refreshed_at"] = now
                store.save_tokens(conn, source.account, values, insert=False)
                return
            values.update(obtained_at=now, refreshed_at=None, status=ACTIVE, problem=None, problem_at=None,
                          username=source.username, provider=source.oauth.provider,
                          client_id=source.oauth.client_id)  # fmt: skip
            store.save_tokens(conn, source.account, values, insert=True)
            store.add_event(conn, now, "oauth-signed-in", {"account": source.username})

    def login_required(self, source: TokenSource, why: str, *, sealed: str | None = None) -> None:
        """The refresh token was refused: mark the account, and — only on the change from
        working to broken, whichever process or thread sees it first — record an
        `oauth-login-required` event, which the running gateway turns into one alert to
        the owner (signin.py; this store never sends mail). With `sealed` (the stored
        refresh token that was refused), a sign-in stored meanwhile by `login` stays as
        it is."""
        now = self.clock()
        with store.begin(self.engine) as conn:
            if not store.mark_login_required(conn, source.account, why, now, sealed=sealed):
                return
            store.add_event(conn, now, "oauth-login-required", {
                "account": source.username, "reason": why[:500],
                "command": login_command(source.label), "sender": self.is_sender(source),
            })  # fmt: skip
            log.error("event=oauth-login-required account=%s reason=%r fix=%r", source.username, why,
                      f"sla-gateway {login_command(source.label)}")  # fmt: skip

    # -- reading ---------------------------------------------------------------------

    def states(self) -> list[TokenState]:
        return [source.state() for source in self.sources()]
