"""An aiosmtpd server for tests that requires AUTH and accepts XOAUTH2: ``OAuthSmtpServer``.

This module owns the SMTP peer of the OAuth tests, standing in for smtp.gmail.com and
smtp.office365.com: a real aiosmtpd server on a free 127.0.0.1 port, without TLS
(``auth_require_tls=False``), that refuses MAIL before a successful AUTH (``530 5.7.0``;
aiosmtpd's own ``auth_required`` would warn about the missing TLS) and records what
it is given (as ``tests.mailtools.Sink`` does, with its ``Delivered`` records).

* ``AUTH XOAUTH2`` (with the initial response or after an empty ``334`` challenge):
  ``user=<u>^Aauth=Bearer <token>^A^A``. The token is checked by an HTTP POST to the
  OAuthServer's introspection endpoint (urllib, the very endpoint Dovecot asks), and
  must be active and belong to ``<u>``. A refusal is Gmail's: a ``334`` challenge carrying
  base64 JSON ``{"status": "401", "schemes": "Bearer", "scope": ...}``; whatever the
  client answers (an empty line, normally) gets ``535 5.7.8``. With
  ``error_challenge=False`` it is Microsoft's: ``535 5.7.8`` at once. When the
  introspection endpoint cannot be reached the answer is ``454 4.7.0`` (temporary).
* ``AUTH PLAIN`` and ``AUTH LOGIN`` with any user name and the fixed ``password``, for
  contrast.

Every attempt is in ``auth_attempts`` as ``(mechanism, user, ok)``. Nothing here is part
of the gateway.
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.parse
import urllib.request
from base64 import b64decode
from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.mailtools import Delivered, Sink, free_port
from tests.oauthserver import DEFAULT_SCOPE, OAuthServer

__all__ = ["OAuthSmtpServer", "oauth_smtp"]

_XOAUTH2 = re.compile(r"user=(?P<user>[^\x01]*)\x01auth=Bearer (?P<token>[^\x01]+)\x01\x01")
# RFC 7628 3.1: gs2 header "n,a=USER," then key=value pairs, auth among them.
_OAUTHBEARER = re.compile(r"n,a=(?P<user>[^,]*),\x01(?:[a-z]+=[^\x01]*\x01)*?auth=Bearer (?P<token>[^\x01]+)\x01"
                          r"(?:[a-z]+=[^\x01]*\x01)*\x01")  # fmt: skip
_REFUSED = "535 5.7.8 Username and Password not accepted"
_UNAVAILABLE = "454 4.7.0 Temporary authentication failure"  # RFC 4954


class OAuthSmtpServer:
    """One SMTP server accepting bearer tokens (XOAUTH2, or OAUTHBEARER when asked);
    see the module docstring."""

    def __init__(
        self,
        introspection_url: str,
        *,
        password: str = "smtp-secret",
        error_challenge: bool = True,
        scope: str = DEFAULT_SCOPE,
        mechanisms: tuple[str, ...] = ("XOAUTH2",),
    ) -> None:
        self.introspection_url = introspection_url
        #: The bearer-token mechanisms offered: XOAUTH2 and/or OAUTHBEARER (RFC 7628).
        self.mechanisms = mechanisms
        self.password = password
        self.error_challenge = error_challenge
        self.scope = scope  #: named in the error challenge
        self.port = 0
        self.auth_attempts: list[tuple[str, str, bool]] = []
        #: The authenticated user of each message in ``received``, in the same order.
        self.senders: list[str] = []
        self._sink = Sink()
        self._controller: Controller | None = None

    @property
    def received(self) -> list[Delivered]:
        return self._sink.received

    def __enter__(self) -> OAuthSmtpServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> OAuthSmtpServer:
        self.port = free_port()
        self._controller = Controller(
            self,
            hostname="127.0.0.1",
            port=self.port,
            auth_require_tls=False,  # auth_required is handle_MAIL's job: no warnings
            authenticator=self._check_password,
            # aiosmtpd takes every handler attribute named auth_* for a mechanism.
            auth_exclude_mechanism=["attempts", *(m for m in ("XOAUTH2", "OAUTHBEARER")
                                                  if m not in self.mechanisms)],
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def wait_for(self, n: int, timeout: float = 10) -> list[Delivered]:
        """Wait (bounded) until at least ``n`` messages arrived; return them all."""
        return self._sink.wait_for(n, timeout)

    # -- aiosmtpd hooks ---------------------------------------------------------------

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        login = session.login_data
        with self._sink._cond:
            self.senders.append(login.decode() if isinstance(login, bytes) else str(login))
        return await self._sink.handle_DATA(server, session, envelope)

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        return await self._bearer(server, args, "XOAUTH2", _XOAUTH2)

    async def auth_OAUTHBEARER(self, server: SMTP, args: list[str]) -> AuthResult:
        return await self._bearer(server, args, "OAUTHBEARER", _OAUTHBEARER)

    async def _bearer(self, server: SMTP, args: list[str], mechanism: str, form: re.Pattern[str]) -> AuthResult:
        if len(args) > 1:
            try:
                blob: Any = b64decode(args[1], validate=True)
            except ValueError:
                await server.push("501 5.5.2 Cannot decode base64")
                return AuthResult(success=False, handled=True)
        else:
            blob = await server.challenge_auth("")
            if blob is MISSING:
                return AuthResult(success=False, handled=True)  # 501 already sent
        match = form.fullmatch(blob.decode("utf-8", "replace"))
        if match is None:
            await server.push(f"501 5.5.2 Cannot parse {mechanism} response")
            return AuthResult(success=False, handled=True)
        user, token = match["user"].replace("=2C", ",").replace("=3D", "="), match["token"]
        try:
            info = await asyncio.to_thread(self._introspect, token)
        except (OSError, ValueError):  # the authorization server is down or talks nonsense
            self.auth_attempts.append((mechanism, user, False))
            await server.push(_UNAVAILABLE)
            return AuthResult(success=False, handled=True)
        ok = info.get("active") is True and info.get("username") == user
        self.auth_attempts.append((mechanism, user, ok))
        if ok:
            return AuthResult(success=True, auth_data=LoginPassword(user.encode(), b""))
        if self.error_challenge:
            error = {"status": "401", "schemes": "Bearer", "scope": self.scope}
            if await server.challenge_auth(json.dumps(error)) is MISSING:
                return AuthResult(success=False, handled=True)
        return AuthResult(success=False, handled=False, message=_REFUSED)

    # -- internals --------------------------------------------------------------------

    def _check_password(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        ok = data.password == self.password.encode()
        self.auth_attempts.append((mechanism, data.login.decode("utf-8", "replace"), ok))
        return AuthResult(success=ok, handled=False, auth_data=data)

    def _introspect(self, token: str) -> dict[str, Any]:
        body = urllib.parse.urlencode({"token": token}).encode()
        with urllib.request.urlopen(self.introspection_url, data=body, timeout=10) as response:
            answer: dict[str, Any] = json.loads(response.read())
        return answer


@pytest.fixture
def oauth_smtp(oauth_server: OAuthServer) -> Iterator[OAuthSmtpServer]:
    """A running OAuthSmtpServer checking tokens with the ``oauth_server`` fixture."""
    with OAuthSmtpServer(oauth_server.introspection_url) as server:
        yield server
