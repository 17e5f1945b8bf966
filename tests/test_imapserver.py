"""The test IMAP server itself (tests/imapserver.py): proof that the fixture is a real,
well-behaved Dovecot before the gateway's tests rely on it."""

from __future__ import annotations

import contextlib
import imaplib
import socket
import ssl
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from imapclient import IMAPClient

from tests import imapserver
from tests.imapserver import Dovecot, DovecotError
from tests.oauthserver import OAuthServer

dovecot = imapserver.dovecot  # the fixture, under its own name in this module


def message(subject: str = "Order 1042: where is it?", sender: str = "ann@example.org") -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = imapserver.DEFAULT_USER
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{abs(hash(subject))}@example.org>"
    msg.set_content("Hello,\nmy parcel has not arrived.\n")
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


def connect(server: Dovecot, user: str | None = None) -> IMAPClient:
    client = IMAPClient(server.host, port=server.port, ssl=False, timeout=10)
    name = user or server.user
    client.login(name, server.users[name])
    return client


@pytest.fixture
def client(dovecot: Dovecot) -> Iterator[IMAPClient]:
    conn = connect(dovecot)
    yield conn
    with contextlib.suppress(imaplib.IMAP4.error, OSError):
        conn.logout()


def test_login_with_plaintext_and_default_capabilities(dovecot: Dovecot) -> None:
    assert dovecot.host == "127.0.0.1"
    conn = connect(dovecot)
    capabilities = set(conn.capabilities())
    assert {b"IDLE", b"UIDPLUS", b"MOVE", b"CONDSTORE"} <= capabilities
    assert b"AUTH=XOAUTH2" not in capabilities, "OAuth only when asked for"
    conn.logout()


def test_wrong_passwords_are_refused_quickly_every_time(dovecot: Dovecot) -> None:
    # No 2 s auth_failure_delay and no growing per-IP penalty; Dovecot still answers
    # failures in 0.5 s batches.
    for _ in range(3):
        conn = IMAPClient(dovecot.host, port=dovecot.port, ssl=False, timeout=10)
        started = time.monotonic()
        with pytest.raises(imaplib.IMAP4.error):
            conn.login(dovecot.user, "wrong")
        assert time.monotonic() - started < 1.5
        conn.shutdown()


def test_special_use_folders_exist_and_are_subscribed(client: IMAPClient) -> None:
    folders = {name: flags for flags, _delimiter, name in client.list_folders()}
    assert set(folders) == {"INBOX", "Sent", "Drafts", "Trash"}
    assert b"\\Sent" in folders["Sent"]
    assert b"\\Drafts" in folders["Drafts"]
    assert b"\\Trash" in folders["Trash"]
    assert client.find_special_folder(b"\\Sent") == "Sent"
    subscribed = {name for _flags, _delimiter, name in client.list_sub_folders()}
    assert {"INBOX", "Sent", "Drafts", "Trash"} <= subscribed


def test_append_returns_increasing_uids_and_keeps_flags(
    dovecot: Dovecot, client: IMAPClient
) -> None:
    first = dovecot.append("INBOX", message("one"))
    second = dovecot.append("INBOX", message("two"), flags=("\\Flagged", "$Important"))
    third = dovecot.append("INBOX", message("three"))
    assert first < second < third
    assert dovecot.uids("INBOX") == [first, second, third]
    assert {"\\Flagged", "$Important"} <= set(dovecot.flags("INBOX", second))
    assert "\\Seen" not in dovecot.flags("INBOX", first)

    client.select_folder("INBOX")
    fetched = client.fetch([first], ["BODY.PEEK[]"])
    assert b"Subject: one" in fetched[first][b"BODY[]"]
    assert "\\Seen" not in dovecot.flags("INBOX", first), "a PEEK must not mark it read"
    client.fetch([first], ["RFC822"])
    assert "\\Seen" in dovecot.flags("INBOX", first), "flags() sees what clients did"


def test_folders_and_users_are_separate(tmp_path: Path) -> None:
    users = {"support@shop.example": "secret", "billing@shop.example": "hunter2"}
    with Dovecot(tmp_path / "d", users=users) as server:
        server.create_folder("Archive.2026", user="billing@shop.example")
        uid = server.append("Archive.2026", message(), user="billing@shop.example")
        assert server.uids("Archive.2026", user="billing@shop.example") == [uid]
        assert server.uids("INBOX", user="billing@shop.example") == []
        with pytest.raises(DovecotError, match="TRYCREATE"):
            server.append("Archive.2026", message())  # the other user has no such folder
        server.create_folder("Rückfragen")  # sent as modified UTF-7
        assert server.uids("Rückfragen") == []
        server.append("Rückfragen", message())
        assert len(server.uids("Rückfragen")) == 1
        server.add_user("late@shop.example", "pw")
        conn = connect(server, "late@shop.example")
        assert conn.select_folder("INBOX")[b"EXISTS"] == 0
        conn.logout()


def test_idle_wakes_up_when_another_connection_appends(
    dovecot: Dovecot, client: IMAPClient
) -> None:
    client.select_folder("INBOX")
    client.idle()
    assert client.idle_check(timeout=0.2) == []
    started = time.monotonic()
    uid = dovecot.append("INBOX", message())
    responses = client.idle_check(timeout=5)
    waited = time.monotonic() - started
    client.idle_done()
    assert (1, b"EXISTS") in responses
    assert waited < 2
    assert client.search(["UNSEEN"]) == [uid]


def test_restart_keeps_mail_and_port_and_breaks_sessions(
    dovecot: Dovecot, client: IMAPClient
) -> None:
    uid = dovecot.append("INBOX", message())
    validity = dovecot.uidvalidity("INBOX")
    port = dovecot.port
    client.select_folder("INBOX")

    dovecot.restart()

    assert dovecot.port == port
    with pytest.raises((imaplib.IMAP4.abort, OSError)):
        client.noop()
    conn = connect(dovecot)
    assert conn.select_folder("INBOX")[b"UIDVALIDITY"] == validity
    assert conn.search() == [uid]
    conn.logout()


def test_stop_is_idempotent_and_frees_the_port(tmp_path: Path) -> None:
    server = Dovecot(tmp_path / "d")
    server.start()
    port = server.port
    server.stop()
    server.stop()
    assert not server.running
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
    with pytest.raises(DovecotError, match="not running"):
        server.append("INBOX", message())


@pytest.mark.parametrize("folder", ["INBOX", "Archive"])
def test_reset_uidvalidity_changes_it_and_keeps_the_messages(dovecot: Dovecot, folder: str) -> None:
    if folder != "INBOX":
        dovecot.create_folder(folder)
    old_uids = [
        dovecot.append(folder, message("first"), flags=("\\Seen",)),
        dovecot.append(folder, message("second")),
    ]
    old_validity = dovecot.uidvalidity(folder)

    dovecot.reset_uidvalidity(folder)

    assert dovecot.uidvalidity(folder) != old_validity
    new_uids = dovecot.uids(folder)
    assert len(new_uids) == 2
    assert min(new_uids) > max(old_uids)
    assert "\\Seen" in dovecot.flags(folder, new_uids[0])
    assert "\\Seen" not in dovecot.flags(folder, new_uids[1])
    conn = connect(dovecot)
    conn.select_folder(folder, readonly=True)
    bodies = conn.fetch(new_uids, ["BODY.PEEK[HEADER.FIELDS (SUBJECT)]"])
    subjects = [bodies[uid][b"BODY[HEADER.FIELDS (SUBJECT)]"].strip() for uid in new_uids]
    assert subjects == [b"Subject: first", b"Subject: second"]
    conn.logout()


def test_reset_uidvalidity_disconnects_sessions_on_that_folder(
    dovecot: Dovecot, client: IMAPClient
) -> None:
    dovecot.append("INBOX", message())
    client.select_folder("INBOX")
    dovecot.reset_uidvalidity("INBOX")
    with pytest.raises((imaplib.IMAP4.abort, OSError)):  # "* BYE ... please relogin."
        client.noop()
        client.noop()


def test_drop_connections_breaks_an_open_session(dovecot: Dovecot, client: IMAPClient) -> None:
    client.select_folder("INBOX")
    client.noop()

    dovecot.drop_connections()

    with pytest.raises((imaplib.IMAP4.abort, OSError)):
        client.noop()
    conn = connect(dovecot)  # the server itself is still up
    conn.noop()
    conn.logout()


def test_drop_connections_interrupts_idle(dovecot: Dovecot, client: IMAPClient) -> None:
    client.select_folder("INBOX")
    client.idle()
    dovecot.drop_connections()
    with pytest.raises((imaplib.IMAP4.abort, OSError)):
        client.idle_check(timeout=2)
        client.idle_done()


def test_tls_mode_serves_imaps_and_starttls(tmp_path: Path) -> None:
    with Dovecot(tmp_path / "d", tls=True) as server:
        assert server.ca_file is not None and server.tls_port is not None
        context = ssl.create_default_context(cafile=str(server.ca_file))

        implicit = IMAPClient(server.host, port=server.tls_port, ssl=True, ssl_context=context)
        implicit.login(server.user, server.password)
        implicit.logout()

        upgraded = IMAPClient(server.host, port=server.port, ssl=False)
        upgraded.starttls(context)
        upgraded.login(server.user, server.password)
        upgraded.logout()


def test_start_failure_raises_with_the_log(tmp_path: Path) -> None:
    with Dovecot(tmp_path / "d"):
        second = Dovecot(tmp_path / "d")  # the same base_dir: Dovecot refuses to start
        with pytest.raises(DovecotError, match="already running"):
            second.start()
        assert not second.running


# -- OAuth 2.0: the oauth2 passdb against tests/oauthserver.py's introspection endpoint ----

OTHER_USER = "billing@shop.example"


@pytest.fixture
def oauth_dovecot(
    tmp_path_factory: pytest.TempPathFactory, oauth_server: OAuthServer
) -> Iterator[Dovecot]:
    users = {imapserver.DEFAULT_USER: imapserver.DEFAULT_PASSWORD, OTHER_USER: "hunter2"}
    root = tmp_path_factory.mktemp("dovecot")
    with Dovecot(root, users=users, oauth2_introspection_url=oauth_server.introspection_url) as d:
        yield d


def unauthenticated(server: Dovecot) -> IMAPClient:
    return IMAPClient(server.host, port=server.port, ssl=False, timeout=10)


def test_xoauth2_login_with_a_valid_token_reaches_the_mail(
    oauth_dovecot: Dovecot, oauth_server: OAuthServer
) -> None:
    uid = oauth_dovecot.append("INBOX", message())
    conn = unauthenticated(oauth_dovecot)
    assert {b"AUTH=XOAUTH2", b"AUTH=OAUTHBEARER", b"AUTH=PLAIN"} <= set(conn.capabilities())
    token = oauth_server.issue_tokens(oauth_dovecot.user)["access_token"]

    conn.oauth2_login(oauth_dovecot.user, token)

    assert conn.select_folder("INBOX")[b"EXISTS"] == 1
    assert conn.search() == [uid]
    conn.logout()
    path, form = oauth_server.requests[-1]  # Dovecot also sends empty client_id/secret
    assert (path, form["token"]) == ("/introspect", token)
    connect(oauth_dovecot).logout()  # passwords still work alongside


def test_oauthbearer_login(oauth_dovecot: Dovecot, oauth_server: OAuthServer) -> None:
    token = oauth_server.issue_tokens(oauth_dovecot.user)["access_token"]
    conn = unauthenticated(oauth_dovecot)
    conn.oauthbearer_login(oauth_dovecot.user, token)
    conn.noop()
    conn.logout()


@pytest.mark.parametrize("case", ["revoked", "expired", "another user's"])
def test_xoauth2_refuses_a_bad_token(
    oauth_dovecot: Dovecot, oauth_server: OAuthServer, case: str
) -> None:
    token = oauth_server.issue_tokens(oauth_dovecot.user)["access_token"]
    if case == "revoked":
        oauth_server.revoke_user(oauth_dovecot.user)
    elif case == "expired":
        oauth_server.expire_access_tokens()
    else:
        token = oauth_server.issue_tokens(OTHER_USER)["access_token"]
    conn = unauthenticated(oauth_dovecot)
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        conn.oauth2_login(oauth_dovecot.user, token)
    conn.shutdown()
    assert oauth_server.introspections == 1


def test_revocation_is_seen_at_the_next_login(
    oauth_dovecot: Dovecot, oauth_server: OAuthServer
) -> None:
    token = oauth_server.issue_tokens(oauth_dovecot.user)["access_token"]
    unauthenticated(oauth_dovecot).oauth2_login(oauth_dovecot.user, token)
    oauth_server.revoke_user(oauth_dovecot.user)  # no cache in between
    conn = unauthenticated(oauth_dovecot)
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        conn.oauthbearer_login(oauth_dovecot.user, token)
    conn.shutdown()
    assert oauth_server.introspections == 2
