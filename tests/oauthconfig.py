"""Gateway configurations that sign in with OAuth 2.0 against the test servers
(tests/oauthserver.py, tests/smtpoauth.py, Dovecot with its oauth2 passdb), and the
small helpers the OAuth tests share: a token key on disk and a clock tests can move."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from gateway import store
from gateway.config import Config
from tests.imapserver import Dovecot
from tests.mailtools import gateway_config
from tests.oauthserver import OAuthServer


def oauth_keys(server: OAuthServer, tmp_path: Path) -> str:
    """The OAuth keys of one config section for the test server (custom provider)."""
    secret = tmp_path / "client-secret"
    secret.write_text(server.client_secret or "")
    lines = [
        'auth = "oauth2"',
        'provider = "custom"',
        f'client_id = "{server.client_id}"',
        f'token_url = "{server.token_url}"',
        f'device_authorization_url = "{server.device_authorization_url}"',
        f'authorization_url = "{server.authorization_url}"',
        'scope = "https://mail.google.com/"',
    ]
    if server.client_secret is not None:
        lines.append(f'client_secret_file = "{secret}"')
    return "\n".join(lines) + "\n"


def token_key(tmp_path: Path) -> Path:
    path = tmp_path / "token-key"
    if not path.exists():
        path.write_text(Fernet.generate_key().decode() + "\n")
    return path


def oauth_config(
    tmp_path: Path,
    database_url: str,
    server: OAuthServer,
    *,
    dovecot: Dovecot | None = None,
    smtp_port: int | None = None,
    sink_port: int | None = None,
    smtp_oauth: bool = False,
    append: str = "",
) -> Config:
    """The example configuration with [inbox.imap] signing in to `dovecot` by OAuth and/or
    [send] submitting to `smtp_port` by OAuth (`smtp_oauth`), tokens keyed from a file."""
    extra: dict[str, str] = {}
    if dovecot is not None:
        extra["# [inbox.imap]\n"] = (
            "[inbox.imap]\n"
            f'host = "{dovecot.host}"\nport = {dovecot.port}\nsecurity = "none"\n'
            f'username = "{dovecot.user}"\npoll_interval = "1s"\ntimeout = "10s"\n'
            + oauth_keys(server, tmp_path)
        )
    if smtp_oauth:
        extra["# null_sender = false "] = oauth_keys(server, tmp_path) + '# null_sender = false '
        extra['# username = "support@shop.example"\n# password_env = "SLA_GATEWAY_SMTP_PASSWORD"'] = (
            'username = "support@shop.example"\n# password_env = "SLA_GATEWAY_SMTP_PASSWORD"'
        )
    append = f'\n[oauth]\ntoken_key_file = "{token_key(tmp_path)}"\nalert_maildir = "{tmp_path / "alerts"}"\n' + append
    return gateway_config(tmp_path, database_url, sink_port=smtp_port or sink_port, extra=extra, append=append)


@dataclass
class MovableClock:
    """A clock the test moves forward (token expiry by the gateway's own reckoning)."""

    now: datetime
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self) -> datetime:
        with self._lock:
            return self.now

    def advance(self, by: timedelta) -> None:
        with self._lock:
            self.now += by


@pytest.fixture
def oauth_dovecot(tmp_path_factory: pytest.TempPathFactory, oauth_server: OAuthServer) -> Iterator[Dovecot]:
    """A fresh Dovecot offering XOAUTH2/OAUTHBEARER, checking tokens with `oauth_server`.
    Use it in a module with `oauth_dovecot = oauthconfig.oauth_dovecot`."""
    server = Dovecot(tmp_path_factory.mktemp("dovecot"), oauth2_introspection_url=oauth_server.introspection_url)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def sign_in(config: Config, server: OAuthServer, username: str = "support@shop.example", *,
            send: bool = False) -> None:  # fmt: skip
    """Store a sign-in for the inbox (or [send]) as `login --import` would."""
    from gateway import store
    from gateway.tokens import Tokens

    engine = store.make_engine(config.database)
    try:
        store.upgrade(engine)
        tokens = Tokens(config, engine, lambda: datetime.now(UTC))
        source = tokens.for_send() if send else tokens.for_imap(config.inboxes[0])
        source.import_refresh_token(server.issue_tokens(username)["refresh_token"])
    finally:
        engine.dispose()


def stored_rows(database_url: str) -> list[sa.Row]:
    """The stored OAuth sign-ins (rows of oauth_tokens), as the database holds them."""
    engine = store.make_engine(database_url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.select(store.oauth_tokens)))
    finally:
        engine.dispose()
