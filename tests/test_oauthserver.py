"""The test OAuth 2.0 authorization server (tests/oauthserver.py) and the XOAUTH2 SMTP
server (tests/smtpoauth.py), over real HTTP and SMTP on 127.0.0.1: proof that they follow
RFC 6749/7009/7662/8628 before the gateway's tests rely on them."""

from __future__ import annotations

import base64
import json
import smtplib
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.oauthserver import DEVICE_GRANT, OAuthServer
from tests.smtpoauth import OAuthSmtpServer

USER = "support@shop.example"
CLIENT = {"client_id": "sla-gateway-test", "client_secret": "test-secret"}


def post(
    url: str, fields: dict[str, str], *, basic: tuple[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    """POST a form; (status, JSON body) for success and error answers alike."""
    request = urllib.request.Request(url, data=urllib.parse.urlencode(fields).encode())
    if basic is not None:
        pair = ":".join(urllib.parse.quote_plus(part) for part in basic)
        request.add_header("Authorization", "Basic " + base64.b64encode(pair.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


def start_device_flow(server: OAuthServer, scope: str = "mail") -> dict[str, Any]:
    status, body = post(
        server.device_authorization_url, {"client_id": CLIENT["client_id"], "scope": scope}
    )
    assert status == 200, body
    return body


def poll(server: OAuthServer, device_code: str) -> tuple[int, dict[str, Any]]:
    return post(
        server.token_url, {"grant_type": DEVICE_GRANT, "device_code": device_code, **CLIENT}
    )


def refresh(server: OAuthServer, refresh_token: str) -> tuple[int, dict[str, Any]]:
    return post(
        server.token_url, {"grant_type": "refresh_token", "refresh_token": refresh_token, **CLIENT}
    )


def introspect(server: OAuthServer, token: str) -> dict[str, Any]:
    status, body = post(server.introspection_url, {"token": token})
    assert status == 200
    return body


@pytest.fixture
def fast() -> Iterator[OAuthServer]:
    """A server whose device codes may be polled without waiting."""
    with OAuthServer(device_interval=0) as server:
        yield server


def test_device_flow_pending_then_approved_gives_working_tokens(fast: OAuthServer) -> None:
    device = start_device_flow(fast, "https://mail.google.com/")
    assert set(device) == {
        "device_code", "user_code", "verification_uri", "verification_uri_complete",
        "expires_in", "interval",
    }  # fmt: skip
    assert device["verification_uri"].startswith(fast.base_url)
    assert device["user_code"] in device["verification_uri_complete"]
    assert fast.pending_user_codes() == [device["user_code"]]
    assert fast.wait_for_device_request(timeout=0) == device["user_code"]

    assert poll(fast, device["device_code"]) == (
        400,
        {"error": "authorization_pending", "error_description": "the user has not answered yet"},
    )
    fast.approve(device["user_code"], USER)
    assert fast.pending_user_codes() == []
    status, tokens = poll(fast, device["device_code"])

    assert status == 200
    assert tokens["token_type"] == "Bearer"
    assert tokens["scope"] == "https://mail.google.com/"
    assert tokens["expires_in"] == 3600
    assert fast.is_active(tokens["access_token"])
    info = introspect(fast, tokens["access_token"])
    assert info["active"] is True
    assert info["username"] == info["sub"] == USER
    assert info["client_id"] == CLIENT["client_id"]
    assert info["scope"] == "https://mail.google.com/"
    assert time.time() + 3590 < info["exp"] <= time.time() + 3600
    assert fast.introspections == 1
    # The device code is single-use.
    assert poll(fast, device["device_code"])[1]["error"] == "invalid_grant"


def test_approval_while_the_client_polls_in_another_thread(fast: OAuthServer) -> None:
    def owner() -> None:
        fast.approve(fast.wait_for_device_request(timeout=5), USER)

    approver = threading.Thread(target=owner)
    approver.start()
    device = start_device_flow(fast)
    deadline = time.monotonic() + 5
    while (answer := poll(fast, device["device_code"]))[0] != 200:
        assert answer[1]["error"] == "authorization_pending"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    approver.join()
    assert introspect(fast, answer[1]["access_token"])["username"] == USER


def test_denied_and_expired_device_codes(fast: OAuthServer) -> None:
    denied = start_device_flow(fast)
    fast.deny(denied["user_code"])
    assert poll(fast, denied["device_code"])[1]["error"] == "access_denied"
    with pytest.raises(KeyError):
        fast.approve(denied["user_code"], USER)  # no longer pending

    fast.device_code_lifetime = 0.05
    expired = start_device_flow(fast)
    time.sleep(0.06)
    assert fast.pending_user_codes() == []
    assert poll(fast, expired["device_code"])[1]["error"] == "expired_token"
    assert poll(fast, "no-such-code")[1]["error"] == "invalid_grant"


def test_polling_faster_than_the_interval_is_slowed_down() -> None:
    with OAuthServer(device_interval=1, slow_down_increment=5) as server:
        device = start_device_flow(server)
        assert device["interval"] == 1
        assert poll(server, device["device_code"])[1]["error"] == "authorization_pending"
        status, body = poll(server, device["device_code"])
        assert (status, body["error"], body["interval"]) == (400, "slow_down", 6)


def test_wait_for_device_request_times_out(fast: OAuthServer) -> None:
    with pytest.raises(TimeoutError):
        fast.wait_for_device_request(timeout=0.05)


def test_refresh_without_rotation_keeps_the_refresh_token(fast: OAuthServer) -> None:
    tokens = fast.issue_tokens(USER)
    status, renewed = refresh(fast, tokens["refresh_token"])
    assert status == 200
    assert renewed["refresh_token"] == tokens["refresh_token"]
    assert renewed["access_token"] != tokens["access_token"]
    assert fast.is_active(renewed["access_token"]) and fast.is_active(tokens["access_token"])
    assert refresh(fast, tokens["refresh_token"])[0] == 200


def test_refresh_with_rotation_retires_the_old_refresh_token() -> None:
    with OAuthServer(rotate_refresh_tokens=True) as server:
        tokens = server.issue_tokens(USER)
        status, renewed = refresh(server, tokens["refresh_token"])
        assert status == 200
        assert renewed["refresh_token"] != tokens["refresh_token"]
        assert refresh(server, tokens["refresh_token"])[1]["error"] == "invalid_grant"
        assert refresh(server, renewed["refresh_token"])[0] == 200


def test_refresh_cannot_widen_the_scope(fast: OAuthServer) -> None:
    tokens = fast.issue_tokens(USER, scope="imap smtp")
    fields = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], **CLIENT}
    assert post(fast.token_url, {**fields, "scope": "imap"})[1]["scope"] == "imap"
    assert post(fast.token_url, {**fields, "scope": "imap admin"})[1]["error"] == "invalid_scope"


def test_client_authentication_by_form_or_basic(fast: OAuthServer) -> None:
    tokens = fast.issue_tokens(USER)
    fields = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    assert post(fast.token_url, fields, basic=("sla-gateway-test", "test-secret"))[0] == 200
    for wrong in (
        post(fast.token_url, fields),
        post(fast.token_url, {**fields, "client_id": "sla-gateway-test"}),
        post(fast.token_url, {**fields, **CLIENT, "client_secret": "nope"}),
        post(fast.token_url, {**fields, **CLIENT, "client_id": "someone-else"}),
        post(fast.token_url, fields, basic=("sla-gateway-test", "nope")),
    ):
        assert wrong[0] == 401
        assert wrong[1]["error"] == "invalid_client"
    assert post(fast.token_url, {**CLIENT, "grant_type": "password"})[1]["error"] == (
        "unsupported_grant_type"
    )
    # The device request needs the right client id; the secret is optional there.
    assert post(fast.device_authorization_url, {"client_id": "someone-else"})[0] == 401
    assert post(fast.device_authorization_url, CLIENT)[0] == 200


def test_public_client_sends_only_its_id() -> None:
    with OAuthServer(client_secret=None, device_interval=0) as server:
        device = start_device_flow(server)
        server.approve(device["user_code"], USER)
        fields = {"grant_type": DEVICE_GRANT, "device_code": device["device_code"]}
        assert post(server.token_url, {**fields, "client_id": "sla-gateway-test"})[0] == 200


def test_revoking_a_refresh_token_revokes_its_access_tokens(fast: OAuthServer) -> None:
    tokens = fast.issue_tokens(USER)
    other = fast.issue_tokens(USER)
    assert post(fast.revocation_url, {"token": tokens["refresh_token"], **CLIENT}) == (200, {})
    assert introspect(fast, tokens["access_token"]) == {"active": False}
    assert refresh(fast, tokens["refresh_token"])[1]["error"] == "invalid_grant"
    assert fast.is_active(other["access_token"]), "another grant is untouched"
    # Unknown tokens are fine (RFC 7009 §2.2); a wrong client is not.
    assert post(fast.revocation_url, {"token": "unknown", **CLIENT})[0] == 200
    assert post(fast.revocation_url, {"token": other["access_token"]})[0] == 401


def test_revoking_an_access_token_keeps_the_refresh_token(fast: OAuthServer) -> None:
    tokens = fast.issue_tokens(USER)
    post(fast.revocation_url, {"token": tokens["access_token"], **CLIENT})
    assert not fast.is_active(tokens["access_token"])
    assert refresh(fast, tokens["refresh_token"])[0] == 200


def test_revoke_user_ends_every_grant_of_that_user(fast: OAuthServer) -> None:
    mine = [fast.issue_tokens(USER), fast.issue_tokens(USER)]
    theirs = fast.issue_tokens("billing@shop.example")
    fast.revoke_user(USER)
    for tokens in mine:
        assert introspect(fast, tokens["access_token"]) == {"active": False}
        assert refresh(fast, tokens["refresh_token"])[1]["error"] == "invalid_grant"
    assert introspect(fast, theirs["access_token"])["active"] is True


def test_introspection_knows_access_tokens_only(fast: OAuthServer) -> None:
    tokens = fast.issue_tokens(USER)
    assert introspect(fast, tokens["refresh_token"]) == {"active": False}
    assert introspect(fast, "garbage") == {"active": False}
    assert post(fast.introspection_url, {})[1]["error"] == "invalid_request"


def test_access_tokens_expire(fast: OAuthServer) -> None:
    old = fast.issue_tokens(USER)
    fast.expire_access_tokens()
    assert introspect(fast, old["access_token"]) == {"active": False}
    status, renewed = refresh(fast, old["refresh_token"])
    assert status == 200 and fast.is_active(renewed["access_token"])

    fast.access_token_lifetime = 0.1
    short = fast.issue_tokens(USER)
    assert short["expires_in"] == 0  # rounded down: never longer than it really lasts
    assert fast.is_active(short["access_token"])
    time.sleep(0.12)
    assert not fast.is_active(short["access_token"])
    assert fast.is_active(renewed["access_token"]), "the lifetime applies to new tokens only"


def test_requests_are_recorded_and_other_paths_are_refused(fast: OAuthServer) -> None:
    post(fast.introspection_url, {"token": "abc"})
    assert post(fast.base_url + "/nowhere", {})[0] == 404
    assert fast.requests == [("/introspect", {"token": "abc"}), ("/nowhere", {})]
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(fast.token_url, timeout=5)
    assert error.value.code == 405
    error.value.close()


def test_stop_is_idempotent() -> None:
    server = OAuthServer().start()
    url = server.token_url
    server.stop()
    server.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, data=b"", timeout=1)


# -- the XOAUTH2 SMTP server ------------------------------------------------------------


def xoauth2(user: str, token: str) -> Any:
    return lambda challenge=None: f"user={user}\x01auth=Bearer {token}\x01\x01"


def smtp_login(server: OAuthSmtpServer, user: str, token: str) -> smtplib.SMTP:
    smtp = smtplib.SMTP("127.0.0.1", server.port, timeout=5)
    smtp.ehlo()
    smtp.auth("XOAUTH2", xoauth2(user, token), initial_response_ok=True)
    return smtp


def test_smtp_xoauth2_with_a_valid_token_can_send(
    oauth_server: OAuthServer, oauth_smtp: OAuthSmtpServer
) -> None:
    tokens = oauth_server.issue_tokens(USER)
    smtp = smtp_login(oauth_smtp, USER, tokens["access_token"])
    smtp.sendmail(USER, ["ann@example.org"], b"Subject: hi\r\n\r\nhello\r\n")
    smtp.quit()

    [delivered] = oauth_smtp.wait_for(1)
    assert delivered.mail_from == USER
    assert delivered.rcpt_tos == ["ann@example.org"]
    assert delivered.message["Subject"] == "hi"
    assert oauth_smtp.senders == [USER]
    assert oauth_smtp.auth_attempts == [("XOAUTH2", USER, True)]
    assert oauth_server.introspections == 1


def test_smtp_xoauth2_without_initial_response(
    oauth_server: OAuthServer, oauth_smtp: OAuthSmtpServer
) -> None:
    tokens = oauth_server.issue_tokens(USER)
    with smtplib.SMTP("127.0.0.1", oauth_smtp.port, timeout=5) as smtp:
        smtp.ehlo()
        smtp.auth("XOAUTH2", xoauth2(USER, tokens["access_token"]), initial_response_ok=False)
    assert oauth_smtp.auth_attempts == [("XOAUTH2", USER, True)]


@pytest.mark.parametrize("case", ["revoked", "expired", "other user", "unknown"])
def test_smtp_xoauth2_refuses_bad_tokens_like_gmail(
    oauth_server: OAuthServer, oauth_smtp: OAuthSmtpServer, case: str
) -> None:
    tokens = oauth_server.issue_tokens(USER)
    user, token = USER, tokens["access_token"]
    if case == "revoked":
        oauth_server.revoke_user(USER)
    elif case == "expired":
        oauth_server.expire_access_tokens()
    elif case == "other user":
        user = "billing@shop.example"
    else:
        token = "not-a-token"
    challenges: list[bytes] = []

    def answer(challenge: bytes | None = None) -> str:
        if challenge is None:
            return f"user={user}\x01auth=Bearer {token}\x01\x01"
        challenges.append(challenge)
        return ""  # the client's empty reply to the error challenge

    with smtplib.SMTP("127.0.0.1", oauth_smtp.port, timeout=5) as smtp:
        smtp.ehlo()
        with pytest.raises(smtplib.SMTPAuthenticationError) as error:
            smtp.auth("XOAUTH2", answer, initial_response_ok=True)
        assert error.value.smtp_code == 535
        assert error.value.smtp_error.startswith(b"5.7.8 ")
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:  # still not logged in
            smtp.sendmail(USER, ["ann@example.org"], b"Subject: hi\r\n\r\nhello\r\n")
        assert refused.value.smtp_code == 530
    assert [json.loads(c) for c in challenges] == [
        {"status": "401", "schemes": "Bearer", "scope": "https://mail.google.com/"}
    ]
    assert oauth_smtp.auth_attempts == [("XOAUTH2", user, False)]
    assert oauth_smtp.received == []


def test_smtp_can_refuse_at_once_like_microsoft(oauth_server: OAuthServer) -> None:
    with OAuthSmtpServer(oauth_server.introspection_url, error_challenge=False) as server:
        smtp = smtplib.SMTP("127.0.0.1", server.port, timeout=5)
        smtp.ehlo()
        with pytest.raises(smtplib.SMTPAuthenticationError) as error:
            smtp.auth("XOAUTH2", xoauth2(USER, "bad"), initial_response_ok=True)
        assert error.value.smtp_code == 535
        smtp.close()


def test_smtp_xoauth2_is_a_temporary_failure_while_the_token_cannot_be_checked(
    oauth_server: OAuthServer, oauth_smtp: OAuthSmtpServer
) -> None:
    token = oauth_server.issue_tokens(USER)["access_token"]
    oauth_server.stop()
    with smtplib.SMTP("127.0.0.1", oauth_smtp.port, timeout=5) as smtp:
        smtp.ehlo()
        with pytest.raises(smtplib.SMTPAuthenticationError) as error:
            smtp.auth("XOAUTH2", xoauth2(USER, token), initial_response_ok=True)
        assert error.value.smtp_code == 454
    assert oauth_smtp.auth_attempts == [("XOAUTH2", USER, False)]


def test_smtp_password_login_for_contrast(oauth_smtp: OAuthSmtpServer) -> None:
    with smtplib.SMTP("127.0.0.1", oauth_smtp.port, timeout=5) as smtp:
        smtp.ehlo()
        assert set(smtp.esmtp_features["auth"].split()) == {"LOGIN", "PLAIN", "XOAUTH2"}
        with pytest.raises(smtplib.SMTPAuthenticationError):
            smtp.login(USER, "wrong")
        smtp.login(USER, "smtp-secret")
        smtp.sendmail(USER, ["ann@example.org"], b"Subject: pw\r\n\r\nhello\r\n")
    assert oauth_smtp.wait_for(1)[0].message["Subject"] == "pw"
    # smtplib tries PLAIN, then LOGIN, with the wrong password; then PLAIN with the right one.
    assert oauth_smtp.auth_attempts == [
        ("PLAIN", USER, False), ("LOGIN", USER, False), ("PLAIN", USER, True),
    ]  # fmt: skip
