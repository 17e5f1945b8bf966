"""The outbox submitting over SMTP with XOAUTH2 to an aiosmtpd server that checks each
token with the test authorization server: it sends, recovers when the server refuses an
expired access token, and when the sending account's refresh token is revoked the rows
stay pending, the owner's one alert goes to the local alert maildir (the outbox cannot
carry it), and everything goes out once the owner signs in again."""

from __future__ import annotations

import mailbox
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

from gateway import store
from gateway.config import Config
from gateway.pipeline import Received
from gateway.service import Service
from tests.oauthconfig import MovableClock, oauth_config, sign_in
from tests.oauthserver import OAuthServer
from tests.smtpoauth import OAuthSmtpServer
from tests.test_intake_imap import NOW, mail

USER = "support@shop.example"


def service_for(config: Config, clock: MovableClock) -> Service:
    service = Service(config, clock=clock)
    service.start(workers=False)  # run_once() does the work, step by step
    return service


def signed_in_sender(
    tmp_path: Path, database_url: str, oauth_server: OAuthServer, smtp: OAuthSmtpServer
) -> tuple[Service, MovableClock]:
    """A service whose [send] submits to `smtp` with OAuth, signed in; and its clock."""
    config = oauth_config(tmp_path, database_url, oauth_server, smtp_port=smtp.port, smtp_oauth=True)
    assert config.send.auth == "oauth2"
    sign_in(config, oauth_server, send=True)
    clock = MovableClock(NOW)
    return service_for(config, clock), clock


def arrive(service: Service, n: int, clock: MovableClock) -> None:
    sender = f"c{n}@customer.example"
    service.pipeline.accept(Received(raw=mail(n, sender=sender), source="smtp", received_at=clock(),
                                     envelope_from=sender, envelope_to=(USER,), inbox="shop"))  # fmt: skip
    service.run_once()


def pending(service: Service) -> int:
    """Acknowledgments waiting (SLA alerts fall due too as the clock moves on)."""
    o = store.outbox.c
    with service.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).where(o.status == "pending", o.kind == "ack")).scalar_one())


def test_outbox_sends_with_xoauth2_and_recovers_after_expiry(
    tmp_path: Path, database_url: str, oauth_server: OAuthServer, oauth_smtp: OAuthSmtpServer
) -> None:
    service, clock = signed_in_sender(tmp_path, database_url, oauth_server, oauth_smtp)
    try:
        arrive(service, 1, clock)
        [ack] = oauth_smtp.wait_for(1)
        assert ack.rcpt_tos == ["c1@customer.example"]
        assert oauth_smtp.auth_attempts == [("XOAUTH2", USER, True)]
        service.sender.transport.close()  # as if the server had hung up
        oauth_server.expire_access_tokens()
        arrive(service, 2, clock)
        assert len(oauth_smtp.wait_for(2)) == 2
        # The stale token was refused once; a refreshed one was accepted at once.
        assert oauth_smtp.auth_attempts[1:] == [("XOAUTH2", USER, False), ("XOAUTH2", USER, True)]
    finally:
        service.close()


def test_outbox_sends_with_oauthbearer_where_only_that_is_offered(
    tmp_path: Path, database_url: str, oauth_server: OAuthServer
) -> None:
    """RFC 7628 OAUTHBEARER for submission, end to end: a server without XOAUTH2."""
    with OAuthSmtpServer(oauth_server.introspection_url, mechanisms=("OAUTHBEARER",)) as server:
        service, clock = signed_in_sender(tmp_path, database_url, oauth_server, server)
        try:
            arrive(service, 1, clock)
            [ack] = server.wait_for(1)
            assert ack.rcpt_tos == ["c1@customer.example"]
            assert server.auth_attempts == [("OAUTHBEARER", USER, True)]
        finally:
            service.close()


def test_revoked_sender_keeps_mail_queued_and_alerts_once_elsewhere(
    tmp_path: Path, database_url: str, oauth_server: OAuthServer, oauth_smtp: OAuthSmtpServer
) -> None:
    service, clock = signed_in_sender(tmp_path, database_url, oauth_server, oauth_smtp)
    try:
        oauth_server.revoke_user(USER)
        arrive(service, 1, clock)
        assert oauth_smtp.received == [] and pending(service) == 1
        alerts = mailbox.Maildir(tmp_path / "alerts", create=False)
        [alert] = list(alerts)
        assert f"Sign-in needed for {USER}" in str(alert["Subject"])
        assert "sla-gateway login --send" in alert.get_payload(decode=True).decode()  # type: ignore[union-attr]
        for _ in range(3):  # retries: still pending, no second alert
            clock.advance(timedelta(hours=1))
            arrive(service, 99, clock)
        # One sign-in alert; the mail waiting for hours also told the owner once (send.alert_after).
        assert sorted(str(a["Subject"]) for a in alerts) == [
            "[sla-gateway] Outgoing mail is not going out", f"[sla-gateway] Sign-in needed for {USER}"]
        assert oauth_smtp.received == [] and pending(service) == 2
        o = store.outbox.c
        with service.engine.connect() as conn:
            errors = list(conn.execute(sa.select(o.last_error).where(o.status == "pending")).scalars())
        assert all("sla-gateway login --send" in (e or "") for e in errors)

        sign_in(service.config, oauth_server, send=True)
        clock.advance(timedelta(hours=2))
        service.run_once()
        sent = oauth_smtp.wait_for(2)
        assert {"c1@customer.example", "c99@customer.example"} <= {d.rcpt_tos[0] for d in sent}
        assert pending(service) == 0
    finally:
        service.close()
