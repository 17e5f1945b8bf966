"""A small, real OAuth 2.0 authorization server for tests: ``OAuthServer`` and its fixture.

This module owns the test suite's stand-in for Google's and Microsoft's identity platforms:
an HTTP server on a free 127.0.0.1 port (``http.server.ThreadingHTTPServer`` in a daemon
thread, stdlib only) with, all POST and form-encoded, answering JSON:

* ``/device``     device authorization (RFC 8628 §3.1-3.2);
* ``/token``      the token endpoint (RFC 6749 §5, RFC 8628 §3.4-3.5): grant types
  ``urn:ietf:params:oauth:grant-type:device_code`` and ``refresh_token``;
* ``/introspect`` token introspection (RFC 7662), which Dovecot's oauth2 passdb and
  tests/smtpoauth.py ask; it needs no client authentication and knows access tokens only
  (a refresh token is ``{"active": false}``, so it can never pass as a bearer token);
* ``/revoke``     token revocation (RFC 7009); revoking a refresh token also revokes the
  access tokens issued from the same grant;
* ``GET /authorize`` the browser sign-in (RFC 6749 §4.1 with PKCE S256, RFC 7636): no
  page, the consent is given at once as ``browser_user`` (``None`` declines) and the
  browser is redirected (302) to the loopback ``redirect_uri`` with ``code`` and
  ``state``; ``/token`` then takes ``grant_type=authorization_code`` once per code, with
  the same ``redirect_uri`` and the ``code_verifier`` that matches the challenge.

Clients: one, ``client_id`` with ``client_secret`` (``None`` makes it a public client that
only sends its id). At ``/token`` and ``/revoke`` a confidential client must authenticate,
with form fields or HTTP Basic; a wrong or missing secret is ``invalid_client`` with status
401. ``/device`` needs the right ``client_id``; a secret, if sent, must be right (as with
Google and Microsoft, which take the device request with the id alone).
Other errors are status 400 with ``{"error": ..., "error_description": ...}``.

The test plays the resource owner with ``approve()``/``deny()`` (there is no browser page),
and controls time with ``access_token_lifetime``, ``device_code_lifetime``,
``expire_access_tokens()`` and ``revoke_user()``; tokens are random
(``secrets.token_urlsafe``), ``exp`` is ``time.time()`` based and ``expires_in`` is the
lifetime rounded down to whole seconds (a client never believes a token lasts longer than
it does). Polling ``/token`` for a device code sooner than its interval answers
``slow_down`` and adds ``slow_down_increment`` seconds (RFC 8628: 5) to that code's
interval; the new interval is also in the error body (an extension). Nothing here is part
of the gateway, and nothing here listens on anything but 127.0.0.1.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import queue
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode

import pytest

__all__ = ["DEFAULT_SCOPE", "DEVICE_GRANT", "OAuthServer", "oauth_server"]

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
DEFAULT_SCOPE = "https://mail.google.com/"
_USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"  # RFC 8628 §6.1: no vowels, no look-alikes


class _OAuthError(Exception):
    """An error answer of an endpoint: RFC 6749 §5.2 style JSON with an HTTP status."""

    def __init__(self, error: str, description: str, status: int = 400, **extra: Any) -> None:
        super().__init__(error, description)
        self.status = status
        self.body = {"error": error, "error_description": description, **extra}


@dataclass
class _DeviceRequest:
    device_code: str
    user_code: str
    scope: str
    expires_at: float  # time.time()
    interval: float
    last_poll: float | None = None  # time.monotonic() of the latest token request
    state: str = "pending"  # pending -> approved | denied; approved -> used
    username: str | None = None


@dataclass
class _Grant:
    """One authorization (device approval or issue_tokens): its refresh and access tokens."""

    username: str
    scope: str
    refresh_token: str
    revoked: bool = False


@dataclass
class _AccessToken:
    grant: _Grant
    expires_at: float  # time.time()
    issued_at: float
    revoked: bool = False

    def active(self) -> bool:
        return not self.revoked and not self.grant.revoked and time.time() < self.expires_at


class OAuthServer:
    """One authorization server on a free 127.0.0.1 port; see the module docstring."""

    def __init__(
        self,
        *,
        access_token_lifetime: float = 3600.0,
        rotate_refresh_tokens: bool = False,
        client_id: str = "sla-gateway-test",
        client_secret: str | None = "test-secret",
        device_interval: int = 1,
        device_code_lifetime: float = 600.0,
        slow_down_increment: int = 5,
    ) -> None:
        #: Settable at any time; applies to access tokens issued afterwards.
        self.access_token_lifetime = access_token_lifetime
        self.rotate_refresh_tokens = rotate_refresh_tokens
        self.client_id = client_id
        self.client_secret = client_secret
        self.device_interval = device_interval
        #: Settable at any time; applies to device codes issued afterwards.
        self.device_code_lifetime = device_code_lifetime
        self.slow_down_increment = slow_down_increment
        #: (path, form fields) of every request, in arrival order.
        self.requests: list[tuple[str, dict[str, str]]] = []
        #: How many introspection requests arrived.
        self.introspections = 0
        self.base_url = ""
        self.device_authorization_url = ""
        self.token_url = ""
        self.introspection_url = ""
        self.revocation_url = ""
        self._lock = threading.RLock()
        self._devices: dict[str, _DeviceRequest] = {}  # by device_code
        self._grants: dict[str, _Grant] = {}  # by current refresh token
        self._access: dict[str, _AccessToken] = {}
        self._device_arrivals: queue.Queue[str] = queue.Queue()
        #: The browser sign-in (GET /authorize): who "signs in" at the consent screen;
        #: None declines (the redirect carries error=access_denied).
        self.browser_user: str | None = "support@shop.example"
        self.authorization_url = ""
        self._codes: dict[str, dict[str, str]] = {}  # authorization code -> its request
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"<OAuthServer {self.base_url or 'stopped'}>"

    def __enter__(self) -> OAuthServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- process ----------------------------------------------------------------------

    def start(self) -> OAuthServer:
        """Listen on a free 127.0.0.1 port and serve in a daemon thread; returns self."""
        if self._httpd is not None:
            raise RuntimeError(f"{self!r} is already running")
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        httpd.daemon_threads = True
        httpd.oauth = self  # type: ignore[attr-defined]
        port = httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{port}"
        self.device_authorization_url = self.base_url + "/device"
        self.token_url = self.base_url + "/token"
        self.introspection_url = self.base_url + "/introspect"
        self.revocation_url = self.base_url + "/revoke"
        self.authorization_url = self.base_url + "/authorize"
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket; idempotent."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    # -- the resource owner and the test's controls ------------------------------------

    def approve(self, user_code: str, username: str) -> None:
        """The owner of ``username`` approves the device request showing ``user_code``."""
        with self._lock:
            request = self._pending(user_code)
            request.state, request.username = "approved", username

    def deny(self, user_code: str) -> None:
        """The owner refuses the device request showing ``user_code``."""
        with self._lock:
            self._pending(user_code).state = "denied"

    def pending_user_codes(self) -> list[str]:
        """User codes of device requests nobody has approved or denied yet (unexpired)."""
        now = time.time()
        with self._lock:
            return [
                r.user_code
                for r in self._devices.values()
                if r.state == "pending" and r.expires_at > now
            ]

    def wait_for_device_request(self, timeout: float = 10.0) -> str:
        """Block until a device authorization request arrives; return its user code.

        Each request is returned once, in arrival order, even if it came before the call.
        Raises TimeoutError if none arrives within ``timeout`` seconds.
        """
        try:
            return self._device_arrivals.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no device authorization request within {timeout} s") from None

    def issue_tokens(self, username: str, scope: str = DEFAULT_SCOPE) -> dict[str, Any]:
        """Tokens for ``username`` without the device dance: the token endpoint's answer."""
        with self._lock:
            return self._new_grant(username, scope)

    def revoke_user(self, username: str) -> None:
        """Revoke every refresh and access token of ``username`` (the app was removed)."""
        with self._lock:
            for grant in self._grants.values():
                if grant.username == username:
                    grant.revoked = True

    def expire_access_tokens(self) -> None:
        """Every access token issued so far becomes inactive, as if its lifetime had passed."""
        past = time.time() - 1
        with self._lock:
            for token in self._access.values():
                token.expires_at = min(token.expires_at, past)

    def is_active(self, access_token: str) -> bool:
        """Whether introspection would call ``access_token`` active (not counted)."""
        with self._lock:
            token = self._access.get(access_token)
            return token is not None and token.active()

    def introspect(self, token: str) -> dict[str, Any]:
        """The introspection answer for ``token``, without HTTP and without counting it."""
        with self._lock:
            access = self._access.get(token)
            if access is None or not access.active():
                return {"active": False}
            grant = access.grant
            return {
                "active": True,
                "username": grant.username,
                "sub": grant.username,
                "email": grant.username,
                "scope": grant.scope,
                "client_id": self.client_id,
                "token_type": "Bearer",
                "exp": int(access.expires_at),
                "iat": int(access.issued_at),
            }

    # -- endpoints (called by the handler, form already parsed) -------------------------

    def _handle(self, path: str, form: dict[str, str], basic: tuple[str, str] | None) -> Any:
        with self._lock:
            self.requests.append((path, dict(form)))
            if path == "/device":
                return self._device(form, basic)
            if path == "/token":
                self._authenticate(form, basic)
                return self._token(form)
            if path == "/introspect":
                self.introspections += 1
                return self.introspect(_required(form, "token"))
            if path == "/revoke":
                self._authenticate(form, basic)
                self._revoke(_required(form, "token"))
                return {}
            raise _OAuthError("not_found", f"no endpoint {path}", status=404)

    def _device(self, form: dict[str, str], basic: tuple[str, str] | None) -> dict[str, Any]:
        client_id, secret = _client_credentials(form, basic)
        if client_id != self.client_id or (
            secret is not None and self.client_secret is not None and secret != self.client_secret
        ):
            raise _OAuthError("invalid_client", "unknown client or wrong secret", status=401)
        user_code = "-".join(
            "".join(secrets.choice(_USER_CODE_ALPHABET) for _ in range(4)) for _ in range(2)
        )
        request = _DeviceRequest(
            device_code=secrets.token_urlsafe(32),
            user_code=user_code,
            scope=form.get("scope") or DEFAULT_SCOPE,
            expires_at=time.time() + self.device_code_lifetime,
            interval=self.device_interval,
        )
        self._devices[request.device_code] = request
        self._device_arrivals.put(user_code)
        verify = self.base_url + "/verify"
        return {
            "device_code": request.device_code,
            "user_code": user_code,
            "verification_uri": verify,
            "verification_uri_complete": f"{verify}?user_code={user_code}",
            "expires_in": int(self.device_code_lifetime),
            "interval": self.device_interval,
        }

    def _token(self, form: dict[str, str]) -> dict[str, Any]:
        grant_type = _required(form, "grant_type")
        if grant_type == DEVICE_GRANT:
            return self._device_token(_required(form, "device_code"))
        if grant_type == "refresh_token":
            return self._refresh(_required(form, "refresh_token"), form.get("scope"))
        if grant_type == "authorization_code":
            return self._code_token(form)
        raise _OAuthError("unsupported_grant_type", f"grant_type {grant_type!r}")

    def _authorize(self, query: dict[str, str]) -> str:
        """GET /authorize (RFC 6749 4.1.1 + PKCE): the consent screen, answered at once
        as `browser_user`; returns where the browser is sent back to."""
        with self._lock:
            self.requests.append(("/authorize", dict(query)))
            if query.get("client_id") != self.client_id:
                raise _OAuthError("invalid_client", "unknown client", status=400)
            redirect = _required(query, "redirect_uri")
            if not redirect.startswith("http://127.0.0.1:"):
                raise _OAuthError("invalid_request", "redirect_uri must be a loopback address")
            if query.get("response_type") != "code" or query.get("code_challenge_method") != "S256":
                raise _OAuthError("invalid_request", "response_type=code with S256 PKCE only")
            back = {"state": query.get("state", "")}
            if self.browser_user is None:
                back["error"] = "access_denied"
            else:
                code = secrets.token_urlsafe(24)
                self._codes[code] = {**query, "username": self.browser_user}
                back["code"] = code
            return redirect + ("&" if "?" in redirect else "?") + urlencode(back)

    def _code_token(self, form: dict[str, str]) -> dict[str, Any]:
        request = self._codes.pop(_required(form, "code"), None)  # one use only
        if request is None:
            raise _OAuthError("invalid_grant", "unknown or used authorization code")
        if form.get("redirect_uri") != request["redirect_uri"]:
            raise _OAuthError("invalid_grant", "redirect_uri differs from the request's")
        verifier = _required(form, "code_verifier")
        digest = hashlib.sha256(verifier.encode()).digest()
        if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != request["code_challenge"]:
            raise _OAuthError("invalid_grant", "PKCE verification failed")
        return self._new_grant(request["username"], request.get("scope") or DEFAULT_SCOPE)

    def _device_token(self, device_code: str) -> dict[str, Any]:
        request = self._devices.get(device_code)
        if request is None or request.state == "used":
            raise _OAuthError("invalid_grant", "unknown or already used device_code")
        now = time.monotonic()
        polled_too_soon = request.last_poll is not None and now - request.last_poll < (
            request.interval - 0.02  # a client that slept the interval is never too soon
        )
        request.last_poll = now
        if time.time() >= request.expires_at:
            raise _OAuthError("expired_token", "the device code has expired")
        if polled_too_soon:
            request.interval += self.slow_down_increment
            raise _OAuthError("slow_down", "polling too fast", interval=request.interval)
        if request.state == "denied":
            raise _OAuthError("access_denied", "the user denied the request")
        if request.state == "pending":
            raise _OAuthError("authorization_pending", "the user has not answered yet")
        assert request.username is not None
        request.state = "used"
        return self._new_grant(request.username, request.scope)

    def _refresh(self, refresh_token: str, scope: str | None) -> dict[str, Any]:
        grant = self._grants.get(refresh_token)
        if grant is None or grant.revoked:
            raise _OAuthError("invalid_grant", "unknown, rotated or revoked refresh token")
        if scope is not None and not set(scope.split()) <= set(grant.scope.split()):
            raise _OAuthError("invalid_scope", "more scope than the grant has")
        if self.rotate_refresh_tokens:
            del self._grants[refresh_token]
            grant.refresh_token = secrets.token_urlsafe(32)
            self._grants[grant.refresh_token] = grant
        return self._new_access_token(grant, scope or grant.scope)

    def _revoke(self, token: str) -> None:
        grant = self._grants.get(token)
        if grant is not None:
            grant.revoked = True  # and with it every access token of the grant
        access = self._access.get(token)
        if access is not None:
            access.revoked = True
        # RFC 7009 §2.2: an unknown token is not an error.

    def _new_grant(self, username: str, scope: str) -> dict[str, Any]:
        grant = _Grant(username=username, scope=scope, refresh_token=secrets.token_urlsafe(32))
        self._grants[grant.refresh_token] = grant
        return self._new_access_token(grant, scope)

    def _new_access_token(self, grant: _Grant, scope: str) -> dict[str, Any]:
        token = secrets.token_urlsafe(32)
        now = time.time()
        lifetime = self.access_token_lifetime
        self._access[token] = _AccessToken(grant=grant, expires_at=now + lifetime, issued_at=now)
        return {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": max(0, int(lifetime)),
            "refresh_token": grant.refresh_token,
            "scope": scope,
        }

    def _authenticate(self, form: dict[str, str], basic: tuple[str, str] | None) -> None:
        client_id, secret = _client_credentials(form, basic)
        if client_id != self.client_id:
            raise _OAuthError("invalid_client", "unknown client", status=401)
        if self.client_secret is not None and secret != self.client_secret:
            raise _OAuthError("invalid_client", "missing or wrong client secret", status=401)

    def _pending(self, user_code: str) -> _DeviceRequest:
        wanted = user_code.upper().replace("-", "")
        for request in self._devices.values():
            if request.user_code.replace("-", "") == wanted and request.state == "pending":
                return request
        raise KeyError(f"no pending device request with user code {user_code!r}")


def _required(form: dict[str, str], name: str) -> str:
    value = form.get(name)
    if not value:
        raise _OAuthError("invalid_request", f"missing parameter {name!r}")
    return value


def _client_credentials(
    form: dict[str, str], basic: tuple[str, str] | None
) -> tuple[str | None, str | None]:
    if basic is not None:
        if "client_secret" in form:
            raise _OAuthError("invalid_request", "client authenticated twice")
        return basic
    return form.get("client_id"), form.get("client_secret")


class _Handler(BaseHTTPRequestHandler):
    """Parses one form POST, hands it to the OAuthServer, writes its JSON answer."""

    server_version = "sla-gateway-test-oauth/1"

    def do_POST(self) -> None:
        server: OAuthServer = self.server.oauth  # type: ignore[attr-defined]
        status, body = 200, {}
        try:
            form = self._form()
            body = server._handle(self.path.split("?", 1)[0], form, self._basic())
        except _OAuthError as exc:
            status, body = exc.status, exc.body
        self._answer(status, body)

    def do_GET(self) -> None:
        if self.path.startswith("/authorize"):
            server: OAuthServer = self.server.oauth  # type: ignore[attr-defined]
            query = {k: v[0] for k, v in parse_qs(self.path.partition("?")[2]).items()}
            try:
                location = server._authorize(query)
            except _OAuthError as exc:
                self._answer(exc.status, exc.body)
                return
            self.send_response(302)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path.startswith("/verify"):
            text = b"Test server: approve with OAuthServer.approve(user_code, username).\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)
            return
        self._answer(405, {"error": "invalid_request", "error_description": "use POST"})

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the requests are in OAuthServer.requests

    def _form(self) -> dict[str, str]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode("utf-8", "replace")
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if raw and content_type != "application/x-www-form-urlencoded":
            raise _OAuthError("invalid_request", f"Content-Type {content_type!r} is not a form")
        form: dict[str, str] = {}
        for name, values in parse_qs(raw, keep_blank_values=True).items():
            if len(values) > 1:
                raise _OAuthError("invalid_request", f"parameter {name!r} given twice")
            form[name] = values[0]
        return form

    def _basic(self) -> tuple[str, str] | None:
        header = self.headers.get("Authorization") or ""
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise _OAuthError("invalid_client", "malformed Basic credentials", 401) from None
        client_id, _, secret = decoded.partition(":")
        # RFC 6749 §2.3.1: both are form-urlencoded before going into Basic.
        return unquote(client_id.replace("+", " ")), unquote(secret.replace("+", " "))

    def _answer(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Pragma", "no-cache")
        if status == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="sla-gateway-test"')
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def oauth_server() -> Iterator[OAuthServer]:
    """A fresh, running OAuthServer with the default settings (client ``sla-gateway-test``)."""
    with OAuthServer() as server:
        yield server
