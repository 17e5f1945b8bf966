"""The IMAP poller signing in with XOAUTH2 to a real Dovecot whose oauth2 passdb checks
every token with the test authorization server: it captures and acknowledges mail, keeps
working when access tokens expire (refreshed ahead of time, or after a refusal), and when
the refresh token is revoked it alerts the owner once, says so in `status`, keeps
retrying, and loses nothing once the owner signs in again."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import Result
from imapclient import IMAPClient

from gateway import store
from gateway.config import Config
from gateway.service import Service
from tests import oauthconfig
from tests.imapserver import Dovecot
from tests.mailtools import Sink
from tests.oauthconfig import MovableClock, oauth_config, sign_in
from tests.oauthserver import OAuthServer
from tests.test_intake_imap import NOW, mail, synced, wait_until

oauth_dovecot = oauthconfig.oauth_dovecot
USER = "support@shop.example"


def start(config: Config, clock: Callable[[], datetime] = lambda: NOW) -> Service:
    service = Service(config, clock=clock)
    service.start()
    wait_until(lambda: synced(service.engine))
    return service


def grants(server: OAuthServer, kind: str) -> int:
    return sum(1 for path, form in server.requests if path == "/token" and form.get("grant_type") == kind)


def count(engine: sa.Engine, table: sa.Table, *where: sa.ColumnElement[bool]) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar_one())


def signed_in_poller_acknowledges(
    tmp_path: Path, database_url: str, server: OAuthServer, dovecot: Dovecot, sink: Sink
) -> None:
    """Sign in, start the service, put one customer mail in INBOX: it is acknowledged."""
    config = oauth_config(tmp_path, database_url, server, dovecot=dovecot, sink_port=sink.port)
    sign_in(config, server)
    service = start(config)
    try:
        dovecot.append("INBOX", mail(1))
        [ack] = sink.wait_for(1)
        assert ack.rcpt_tos == ["kim@customer.example"]
    finally:
        service.close()


def test_poller_signs_in_with_xoauth2_and_acknowledges(
    tmp_path: Path, database_url: str, oauth_server: OAuthServer, oauth_dovecot: Dovecot, sink: Sink
) -> None:
    signed_in_poller_acknowledges(tmp_path, database_url, oauth_server, oauth_dovecot, sink)
    assert oauth_server.introspections >= 2  # INBOX and Sent each signed in with a token


def test_poller_signs_in_with_oauthbearer_where_only_that_is_offered(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, database_url: str,
    oauth_server: OAuthServer, sink: Sink,
) -> None:  # fmt: skip
    """RFC 7628 OAUTHBEARER, end to end: a server that offers no XOAUTH2."""
    dovecot = Dovecot(tmp_path_factory.mktemp("bearer"), oauth2_introspection_url=oauth_server.introspection_url,
                      oauth2_mechanisms=("oauthbearer",))  # fmt: skip
    dovecot.start()
    try:
        with IMAPClient(dovecot.host, dovecot.port, ssl=False) as probe:
            offered = probe.capabilities()
        assert b"AUTH=OAUTHBEARER" in offered and b"AUTH=XOAUTH2" not in offered
        signed_in_poller_acknowledges(tmp_path, database_url, oauth_server, dovecot, sink)
        assert oauth_server.introspections >= 1  # signed in (XOAUTH2 would have been refused)
    finally:
        dovecot.stop()


def test_refused_access_token_is_refreshed_and_the_login_retried(
    tmp_path: Path, database_url: str, oauth_server: OAuthServer, oauth_dovecot: Dovecot, sink: Sink
) -> None:
    config = oauth_config(tmp_path, database_url, oauth_server, dovecot=oauth_dovecot, sink_port=sink.port)
    sign_in(config, oauth_server)
    service = start(config)
    try:
        before = grants(oauth_server, "refresh_token")
        oauth_server.expire_access_tokens()  # early, by the server's reckoning only
        oauth_dovecot.drop_connections()
        oauth_dovecot.append("INBOX", mail(1))
        assert len(sink.wait_for(1, timeout=30)) == 1
        assert grants(oauth_server, "refresh_token") > before
    finally:
        service.close()


def test_access_token_is_refreshed_ahead_of_expiry_with_rotation(
    tmp_path: Path, database_url: str, sink: Sink
) -> None:
    server = OAuthServer(access_token_lifetime=600, rotate_refresh_tokens=True).start()
    try:
        dovecot = Dovecot(tmp_path / "dc", oauth2_introspection_url=server.introspection_url)
        dovecot.start()
        config = oauth_config(tmp_path, database_url, server, dovecot=dovecot, sink_port=sink.port)
        clock = MovableClock(NOW)
        sign_in(config, server)  # stored by the real clock: 10 minutes from now
        service = start(config, clock)
        try:
            refreshes = grants(server, "refresh_token")
            with service.engine.connect() as conn:
                first = conn.execute(sa.select(store.oauth_tokens.c.refresh_token)).scalar_one()
            # By the gateway's clock the token is now within its last tenth: refresh first.
            clock.now = datetime.now(UTC) + timedelta(seconds=550)
            dovecot.drop_connections()
            dovecot.append("INBOX", mail(1))
            assert len(sink.wait_for(1, timeout=30)) == 1
            assert grants(server, "refresh_token") == refreshes + 1  # one refresh, shared by both folders
            with service.engine.connect() as conn:
                second = conn.execute(sa.select(store.oauth_tokens.c.refresh_token)).scalar_one()
            assert second != first  # the rotated refresh token was stored
        finally:
            service.close()
            dovecot.stop()
    finally:
        server.stop()


def test_revoked_sign_in_alerts_once_keeps_retrying_and_loses_nothing(
    tmp_path: Path, database_url: str, oauth_server: OAuthServer, oauth_dovecot: Dovecot,
    sink: Sink, run_cli: Callable[..., Result],
) -> None:  # fmt: skip
    config = oauth_config(tmp_path, database_url, oauth_server, dovecot=oauth_dovecot, sink_port=sink.port)
    sign_in(config, oauth_server)
    service = start(config)
    try:
        oauth_server.revoke_user(USER)
        oauth_dovecot.drop_connections()
        oauth_dovecot.append("INBOX", mail(1))  # arrives while the gateway cannot sign in
        [alert] = sink.wait_for(1, timeout=30)
        assert alert.rcpt_tos == ["owner@shop.example"]
        assert f"Sign-in needed for {USER}" in str(alert.message["Subject"])
        assert "sla-gateway login shop" in alert.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        poller = service._pollers[0]
        assert "sla-gateway login shop" in (poller.last_error or "")  # type: ignore[attr-defined]
        time.sleep(4)  # several retries by both folder threads
        assert count(service.engine, store.outbox, store.outbox.c.kind == "alert") == 1
        assert count(service.engine, store.events, store.events.c.kind == "oauth-login-required") == 1
        status = run_cli("--config", str(config.path), "status")
        assert f"oauth {USER}: sign-in needed since" in status.output
        assert "run `sla-gateway login shop`" in status.output
        assert count(service.engine, store.messages) == 0  # not read yet: still in the mailbox

        sign_in(config, oauth_server)  # the owner signs in again
        acks = sink.wait_for(2, timeout=60)  # the next retry picks it up: mail(1) is acknowledged
        assert acks[1].rcpt_tos == ["kim@customer.example"]
        assert "signed in" in run_cli("--config", str(config.path), "status").output
    finally:
        service.close()
