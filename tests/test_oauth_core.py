"""The pure OAuth rules (gateway/oauth.py) and the OAuth configuration keys: refresh
timing by an injected clock, token and device answers, the error table, the SASL strings,
and configuration mistakes reported with file, key and fix."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest

from gateway import oauth
from gateway.config import parse
from gateway.errors import ConfigError
from tests.conftest import example_text

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("lifetime", "left", "refresh"),
    [
        (timedelta(hours=1), timedelta(minutes=6), False),
        (timedelta(hours=1), timedelta(minutes=5), True),  # 5 minutes before the end
        (timedelta(seconds=60), timedelta(seconds=7), False),
        (timedelta(seconds=60), timedelta(seconds=6), True),  # a tenth of a short lifetime
        (timedelta(hours=1), -timedelta(seconds=1), True),
    ],
)
def test_refresh_ahead_of_expiry(lifetime: timedelta, left: timedelta, refresh: bool) -> None:
    expires = T0 + lifetime
    assert oauth.needs_refresh(T0, expires, expires - left) is refresh


def test_token_answers() -> None:
    grant = oauth.parse_grant({"access_token": "A", "token_type": "bearer", "expires_in": 3599,
                               "refresh_token": "R", "scope": "s"}, T0)  # fmt: skip
    assert grant.expires_at == T0 + timedelta(seconds=3599) and grant.refresh_token == "R"
    assert "A" not in repr(grant) and "R" not in repr(grant).replace("Grant", "")
    assert oauth.parse_grant({"access_token": "A"}, T0).refresh_token is None  # no rotation
    with pytest.raises(oauth.BadAnswer):
        oauth.parse_grant({"token_type": "Bearer"}, T0)
    with pytest.raises(oauth.BadAnswer):
        oauth.parse_grant({"access_token": "A", "token_type": "mac"}, T0)
    google = oauth.parse_device_code({"device_code": "D", "user_code": "U", "expires_in": 1800,
                                      "interval": 5, "verification_url": "https://www.google.com/device"}, T0)  # fmt: skip
    assert google.verification_uri == "https://www.google.com/device" and google.interval == 5
    assert "D" not in repr(google).replace("DeviceCode", "")


@pytest.mark.parametrize(
    ("status", "body", "outcome"),
    [
        (400, {"error": "authorization_pending"}, oauth.Outcome.PENDING),
        (400, {"error": "slow_down"}, oauth.Outcome.SLOW_DOWN),
        (400, {"error": "authorization_declined"}, oauth.Outcome.DENIED),
        (400, {"error": "invalid_grant", "error_description": "AADSTS70008: expired\nTrace"}, oauth.Outcome.REVOKED),
        (401, {"error": "invalid_client"}, oauth.Outcome.CLIENT),
        (400, {"error": "invalid_scope"}, oauth.Outcome.SCOPE),
        (429, {}, oauth.Outcome.TEMPORARY),
    ],
)
def test_error_table(status: int, body: dict[str, str], outcome: oauth.Outcome) -> None:
    error = oauth.error_of(status, body)
    assert error.outcome is outcome
    assert "\n" not in str(error)


def test_slow_down_adds_five_seconds() -> None:
    assert oauth.next_interval(5.0, oauth.Outcome.SLOW_DOWN) == 10.0
    assert oauth.next_interval(5.0, oauth.Outcome.PENDING) == 5.0


def test_sasl_strings() -> None:
    assert oauth.xoauth2("u@x.example", "T") == b"user=u@x.example\x01auth=Bearer T\x01\x01"
    assert (oauth.oauthbearer("u@x.example", "T", "imap.x.example", 993)
            == b"n,a=u@x.example,\x01host=imap.x.example\x01port=993\x01auth=Bearer T\x01\x01")  # fmt: skip
    assert oauth.oauthbearer("a,b=c", "T").startswith(b"n,a=a=2Cb=3Dc,\x01auth=")
    assert base64.b64encode(oauth.xoauth2("u", "T"))  # what goes on the wire
    assert oauth.mechanism(["PLAIN", "XOAUTH2", "OAUTHBEARER"]) == "XOAUTH2"
    assert oauth.mechanism(["OAUTHBEARER"]) == "OAUTHBEARER"
    assert oauth.mechanism([]) == "XOAUTH2"


def test_presets() -> None:
    device, token, scope = oauth.preset("microsoft", "shop.example")
    assert device == "https://login.microsoftonline.com/shop.example/oauth2/v2.0/devicecode"
    assert token == "https://login.microsoftonline.com/shop.example/oauth2/v2.0/token"
    assert scope.split() == ["https://outlook.office.com/IMAP.AccessAsUser.All",
                             "https://outlook.office.com/SMTP.Send", "offline_access"]  # fmt: skip
    assert oauth.preset("google") == ("https://oauth2.googleapis.com/device/code",
                                      "https://oauth2.googleapis.com/token", "https://mail.google.com/")  # fmt: skip


IMAP = '[inbox.imap]\nhost = "outlook.office365.com"\nusername = "support@shop.example"\n'


def config_with(imap: str) -> str:
    return example_text().replace("# [inbox.imap]\n", imap)


def test_oauth_config_for_microsoft() -> None:
    config = parse(config_with(IMAP + 'auth = "oauth2"\nprovider = "microsoft"\nclient_id = "abc"\ntenant = "shop.example"\n'))
    imap = config.inboxes[0].imap
    assert imap is not None and imap.auth == "oauth2" and imap.oauth is not None
    assert imap.oauth.token_url.endswith("/shop.example/oauth2/v2.0/token")
    assert config.oauth.key.env == "SLA_GATEWAY_TOKEN_KEY"  # the default key source


def test_oauth_config_mistakes_name_file_key_and_fix() -> None:
    text = config_with(IMAP + 'auth = "oauth2"\nprovider = "gogle"\npassword_env = "X"\n')
    with pytest.raises(ConfigError) as info:
        parse(text, "gw.toml")
    messages = [str(p) for p in info.value.problems]
    assert 'gw.toml: inbox[0].imap.provider: "gogle" is not one of google, microsoft, custom; did you mean "google"?' in messages
    assert any("inbox[0].imap.password_env: is not used with auth = \"oauth2\"" in m for m in messages)
    with pytest.raises(ConfigError) as info:
        parse(config_with(IMAP + 'auth = "oauth2"\nprovider = "google"\n'), "gw.toml")
    messages = [str(p) for p in info.value.problems]
    assert any("inbox[0].imap.client_id: is missing" in m for m in messages)
    assert any("has no client secret (Google requires one)" in m for m in messages)
    with pytest.raises(ConfigError) as info:
        parse(config_with(IMAP + 'auth = "oauth2"\nprovider = "custom"\nclient_id = "c"\n'
                          'token_url = "http://login.example/token"\n'), "gw.toml")  # fmt: skip
    messages = [str(p) for p in info.value.problems]
    assert any('token_url: "http://login.example/token" is not an https:// URL' in m for m in messages)
    assert any("device_authorization_url: is missing" in m for m in messages)
    with pytest.raises(ConfigError) as info:
        parse(config_with(IMAP + 'password_env = "X"\ntenant = "t"\n'), "gw.toml")
    assert any('tenant: is only used with auth = "oauth2"' in str(p) for p in info.value.problems)


def test_oauth_never_sends_a_bearer_token_in_clear_text() -> None:
    """security = "none" with auth = "oauth2" only to this machine (a test server or a
    local relay); to any other host it is refused, naming the key."""
    oauth_keys = 'auth = "oauth2"\nprovider = "microsoft"\nclient_id = "abc"\n'
    with pytest.raises(ConfigError) as info:
        parse(config_with(IMAP + 'security = "none"\n' + oauth_keys), "gw.toml")
    assert any("gw.toml: inbox[0].imap.security: is \"none\" with auth = \"oauth2\" to outlook.office365.com"
               in str(p) for p in info.value.problems)  # fmt: skip
    local = IMAP.replace("outlook.office365.com", "127.0.0.1")
    assert parse(config_with(local + 'security = "none"\n' + oauth_keys)).inboxes[0].imap is not None
