"""`sla-gateway login` against the test authorization server: the device authorization
grant (approve, deny, slow_down), the token stored encrypted, `--import`, and the clear
errors for a missing key or a wrong inbox name; `check --connect` and `status` on tokens."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from click.testing import Result

from tests import oauthconfig
from tests.conftest import FIXED_NOW
from tests.imapserver import Dovecot
from tests.oauthconfig import oauth_config, stored_rows
from tests.oauthserver import OAuthServer

oauth_dovecot = oauthconfig.oauth_dovecot

Cli = Callable[..., Result]
USER = "support@shop.example"


def approve_later(server: OAuthServer, username: str = USER, *, deny: bool = False) -> threading.Thread:
    """Play the owner: wait for the device request, then approve (or deny) it."""

    def owner() -> None:
        code = server.wait_for_device_request(timeout=20)
        if deny:
            server.deny(code)
        else:
            server.approve(code, username)

    thread = threading.Thread(target=owner, daemon=True)
    thread.start()
    return thread


def test_login_with_the_device_flow_stores_the_token_encrypted(
    tmp_path: Path, database_url: str, oauth_server: OAuthServer, oauth_dovecot: Dovecot, run_cli: Cli
) -> None:
    config = oauth_config(tmp_path, database_url, oauth_server, dovecot=oauth_dovecot)
    owner = approve_later(oauth_server)
    result = run_cli("--config", str(config.path), "login", "shop")
    owner.join()
    assert result.exit_code == 0, result.output
    assert f"{oauth_server.base_url}/verify" in result.output
    assert "enter the code:" in result.output
    assert f"signed in {USER}; the refresh token is stored encrypted" in result.output
    [row] = stored_rows(database_url)
    assert row.username == USER and row.status == "active"
    grants = [form.get("grant_type") for path, form in oauth_server.requests if path == "/token"]
    assert grants and set(grants) == {"urn:ietf:params:oauth:grant-type:device_code"}
    # Neither token is in the database as written: only Fernet ciphertext is.
    raw = " ".join(str(v) for v in row._mapping.values())
    for token in _issued_tokens(oauth_server):
        assert token not in raw
        assert token not in result.output
    assert row.refresh_token.startswith("gAAAA")  # Fernet's version byte, base64


def _issued_tokens(server: OAuthServer) -> list[str]:
    with server._lock:  # the test server's own records of what it issued
        return [*server._access, *server._grants]


def test_denied_login_stores_nothing_and_says_so(
    tmp_path: Path, database_url: str, oauth_server: OAuthServer, oauth_dovecot: Dovecot, run_cli: Cli
) -> None:
    config = oauth_config(tmp_path, database_url, oauth_server, dovecot=oauth_dovecot)
    owner = approve_later(oauth_server, deny=True)
    result = run_cli("--config", str(config.path), "login")  # the only OAuth inbox
    owner.join()
    assert result.exit_code == 1
    assert "the sign-in was declined" in result.output and "nothing was stored" in result.output
    assert stored_rows(database_url) == []


def test_login_polls_at_the_interval_and_slows_down_when_told(
    tmp_path: Path, database_url: str, oauth_dovecot: Dovecot, run_cli: Cli
) -> None:
    server = OAuthServer(device_interval=1, slow_down_increment=1).start()
    try:
        config = oauth_config(tmp_path, database_url, server, dovecot=oauth_dovecot)

        def polls() -> int:
            return sum(1 for path, _ in server.requests if path == "/token")

        def owner() -> None:
            code = server.wait_for_device_request(timeout=20)
            while polls() < 1:
                time.sleep(0.02)
            with server._lock:  # the server now wants 3 s between polls: the next is too soon
                for request in server._devices.values():
                    request.interval = 3
            server.approve(code, USER)

        thread = threading.Thread(target=owner, daemon=True)
        thread.start()
        started = time.monotonic()
        result = run_cli("--config", str(config.path), "login", "shop")
        elapsed = time.monotonic() - started
        thread.join()
        assert result.exit_code == 0, result.output
        # pending (after 1 s), slow_down (1 s later), then success after 1 + 5 s more
        assert polls() == 3
        assert elapsed >= 7.5
    finally:
        server.stop()


def test_import_tries_the_refresh_token_before_storing_it(
    tmp_path: Path, database_url: str, oauth_server: OAuthServer, oauth_dovecot: Dovecot, run_cli: Cli
) -> None:
    config = oauth_config(tmp_path, database_url, oauth_server, dovecot=oauth_dovecot)
    bad = run_cli("--config", str(config.path), "login", "shop", "--import", input="not-a-token\n")
    assert bad.exit_code == 1
    assert "refused that refresh token" in bad.output and "nothing was stored" in bad.output
    assert stored_rows(database_url) == []
    refresh = oauth_server.issue_tokens(USER)["refresh_token"]
    good = run_cli("--config", str(config.path), "login", "shop", "--import", input=refresh + "\n")
    assert good.exit_code == 0, good.output
    assert refresh not in good.output
    [row] = stored_rows(database_url)
    assert refresh not in row.refresh_token


def test_login_problems_are_clear(
    tmp_path: Path, database_url: str, oauth_server: OAuthServer, oauth_dovecot: Dovecot, run_cli: Cli
) -> None:
    config = oauth_config(tmp_path, database_url, oauth_server, dovecot=oauth_dovecot)
    result = run_cli("--config", str(config.path), "login", "shopp")
    assert result.exit_code == 2 and 'no inbox is named "shopp" (configured: shop)' in result.output
    (tmp_path / "token-key").unlink()
    result = run_cli("--config", str(config.path), "login", "shop")
    assert result.exit_code == 2
    assert "oauth.token_key_file: cannot read" in result.output
    assert "Traceback" not in result.output
    (tmp_path / "token-key").write_text("too-short")
    result = run_cli("--config", str(config.path), "login", "shop")
    assert result.exit_code == 2 and "is not a Fernet key" in result.output
    assert oauth_server.pending_user_codes() == []  # the key is checked before any sign-in starts


def test_check_connect_and_status_report_the_token(
    tmp_path: Path, database_url: str, oauth_server: OAuthServer, oauth_dovecot: Dovecot, run_cli: Cli
) -> None:
    config = oauth_config(tmp_path, database_url, oauth_server, dovecot=oauth_dovecot)
    args = ("--config", str(config.path))
    run_cli(*args, "db", "upgrade")
    before = run_cli(*args, "check", "--connect")
    assert before.exit_code == 1
    assert f"PROBLEM OAuth {USER} (custom): no token: run `sla-gateway login shop`" in before.output
    assert "Traceback" not in before.output
    assert "no token: run `sla-gateway login shop`" in run_cli(*args, "status").output

    refresh = oauth_server.issue_tokens(USER)["refresh_token"]
    assert run_cli(*args, "login", "shop", "--import", input=refresh + "\n").exit_code == 0
    after = run_cli(*args, "check", "--connect")
    assert f"OK      OAuth {USER} (custom): signed in {FIXED_NOW:%Y-%m-%d %H:%M:%S} UTC; access token valid until" in after.output
    assert "logged in; watching INBOX; Sent folder Sent" in after.output, after.output
    status = run_cli(*args, "status")
    assert f"oauth {USER}: signed in" in status.output

    oauth_server.revoke_user(USER)
    revoked = run_cli(*args, "check", "--connect")
    assert revoked.exit_code == 1
    assert "sign in again: run `sla-gateway login shop`" in revoked.output
    assert "sign-in needed since" in run_cli(*args, "status").output
