"""OAuth 2.0 sign-in for mailboxes, without any I/O: the rules, not the wire.

Owns: the provider presets (Google, Microsoft, custom endpoints and the exact scopes for
IMAP + SMTP), turning token-endpoint and device-authorization answers (RFC 6749, RFC 8628)
into frozen values, the browser sign-in's request and redirect (authorization code with
PKCE to a loopback address, RFC 7636 and RFC 8252), the table that says what each OAuth error means for us, when an
access token is due for refresh (by a clock the caller passes in), and the SASL initial
responses for XOAUTH2 and OAUTHBEARER (RFC 7628). It imports no HTTP, database or mail
library, and it never puts a token into a `repr`, a log line or an error message: the
values that hold tokens print as `<hidden>`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

PROVIDERS = ("google", "microsoft", "custom")

GOOGLE_AUTH_URL = "https://accounts.google.com/o/oauth2/v2/auth"
GOOGLE_DEVICE_URL = "https://oauth2.googleapis.com/device/code"
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
GOOGLE_SCOPE = "https://mail.google.com/"  # IMAP and SMTP both; there is no narrower one
MICROSOFT_SCOPE = (
    "https://outlook.office.com/IMAP.AccessAsUser.All "
    "https://outlook.office.com/SMTP.Send offline_access"
)
MICROSOFT_DEFAULT_TENANT = "common"

REFRESH_MARGIN_MAX = timedelta(minutes=5)  # refresh at most this long before expiry ...
REFRESH_MARGIN_SHARE = 0.1  # ... or when a tenth of the lifetime is left, if that is sooner
DEFAULT_LIFETIME = timedelta(hours=1)  # when a server gives no expires_in
SLOW_DOWN_STEP = 5.0  # RFC 8628 3.5: add five seconds to the interval on slow_down


def microsoft_urls(tenant: str) -> tuple[str, str]:
    """(device authorization URL, token URL) of a Microsoft Entra tenant."""
    base = f"https://login.microsoftonline.com/{tenant}/oauth2/v2.0"
    return f"{base}/devicecode", f"{base}/token"


def preset(provider: str, tenant: str = "") -> tuple[str, str, str]:
    """(device authorization URL, token URL, scope) for a named provider."""
    if provider == "google":
        return GOOGLE_DEVICE_URL, GOOGLE_TOKEN_URL, GOOGLE_SCOPE
    if provider == "microsoft":
        device, token = microsoft_urls(tenant or MICROSOFT_DEFAULT_TENANT)
        return device, token, MICROSOFT_SCOPE
    raise ValueError(f"no preset for provider {provider!r}")


def authorization_endpoint(provider: str, tenant: str = "") -> str:
    """Where a browser signs in (the authorization endpoint) for a named provider."""
    if provider == "google":
        return GOOGLE_AUTH_URL
    if provider == "microsoft":
        tenant = tenant or MICROSOFT_DEFAULT_TENANT
        return f"https://login.microsoftonline.com/{tenant}/oauth2/v2.0/authorize"
    raise ValueError(f"no preset for provider {provider!r}")


def account_key(token_url: str, client_id: str, username: str) -> str:
    """The stored token's key: one per (authorization server, app, mailbox user). Two
    config sections naming the same mailbox and app share one sign-in."""
    text = "\n".join((token_url, client_id, username.lower()))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------- values


@dataclass(frozen=True)
class Grant:
    """What a token endpoint gave: an access token, its lifetime, maybe a new refresh token."""

    access_token: str = field(repr=False)
    issued_at: datetime
    expires_at: datetime
    refresh_token: str | None = field(default=None, repr=False)
    scope: str = ""


@dataclass(frozen=True)
class DeviceCode:
    """A device authorization (RFC 8628 3.2): what to show the owner and how to poll."""

    device_code: str = field(repr=False)
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_at: datetime
    interval: float


class Outcome(Enum):
    """What an error answer from the authorization server means for us."""

    PENDING = "pending"  # device flow: not approved yet; keep polling
    SLOW_DOWN = "slow-down"  # device flow: poll less often
    DENIED = "denied"  # the owner declined
    EXPIRED = "expired"  # the device code ran out before approval
    REVOKED = "revoked"  # refresh token revoked or expired: the owner must sign in again
    CLIENT = "client"  # the app registration or its secret is wrong: configuration
    SCOPE = "scope"  # the server refuses the scope for this client/flow: configuration
    TEMPORARY = "temporary"  # anything else: try again later


ERRORS: Mapping[str, Outcome] = {
    "authorization_pending": Outcome.PENDING,
    "slow_down": Outcome.SLOW_DOWN,
    "access_denied": Outcome.DENIED,
    "authorization_declined": Outcome.DENIED,  # Microsoft's word for it
    "expired_token": Outcome.EXPIRED,
    "bad_verification_code": Outcome.EXPIRED,
    "invalid_grant": Outcome.REVOKED,
    "invalid_client": Outcome.CLIENT,
    "unauthorized_client": Outcome.CLIENT,
    "invalid_request": Outcome.CLIENT,
    "unsupported_grant_type": Outcome.CLIENT,
    "invalid_scope": Outcome.SCOPE,
    "temporarily_unavailable": Outcome.TEMPORARY,
    "server_error": Outcome.TEMPORARY,
}


@dataclass(frozen=True)
class ServerError:
    """An error answer, reduced to what is safe to show: its code and a short description."""

    outcome: Outcome
    code: str
    description: str

    def __str__(self) -> str:
        return f"{self.code}: {self.description}" if self.description else self.code


class BadAnswer(ValueError):
    """The server's answer is not a usable OAuth response (says what is missing)."""


def error_of(status: int, body: Mapping[str, Any]) -> ServerError:
    """Classify a non-200 answer from a token or device endpoint."""
    code = body.get("error")
    code = code if isinstance(code, str) else f"HTTP {status}"
    description = body.get("error_description")
    text = description.splitlines()[0][:200] if isinstance(description, str) and description else ""
    outcome = ERRORS.get(code)
    if outcome is None:
        outcome = Outcome.TEMPORARY if status >= 500 or status == 429 else Outcome.CLIENT
    return ServerError(outcome, code, text)


def parse_grant(body: Mapping[str, Any], now: datetime) -> Grant:
    """A successful token response (RFC 6749 5.1) -> Grant; BadAnswer if unusable."""
    token = body.get("access_token")
    if not isinstance(token, str) or not token:
        raise BadAnswer("the token response has no access_token")
    kind = body.get("token_type", "Bearer")
    if not isinstance(kind, str) or kind.lower() != "bearer":
        raise BadAnswer(f"the token type is {kind!r}, not Bearer")
    lifetime = _seconds(body.get("expires_in"))
    expires = now + (DEFAULT_LIFETIME if lifetime is None else timedelta(seconds=lifetime))
    refresh = body.get("refresh_token")
    scope = body.get("scope", "")
    return Grant(
        access_token=token,
        issued_at=now,
        expires_at=expires,
        refresh_token=refresh if isinstance(refresh, str) and refresh else None,
        scope=scope if isinstance(scope, str) else "",
    )


def parse_device_code(body: Mapping[str, Any], now: datetime) -> DeviceCode:
    """A device authorization response (RFC 8628 3.2) -> DeviceCode. Google writes
    `verification_url` where the RFC says `verification_uri`; both are accepted."""
    device_code = body.get("device_code")
    user_code = body.get("user_code")
    uri = body.get("verification_uri") or body.get("verification_url")
    if not all(isinstance(v, str) and v for v in (device_code, user_code, uri)):
        raise BadAnswer("the device authorization response lacks device_code, user_code or verification_uri")
    complete = body.get("verification_uri_complete")
    lifetime = _seconds(body.get("expires_in")) or 900.0
    interval = _seconds(body.get("interval")) or 5.0
    return DeviceCode(
        device_code=str(device_code),
        user_code=str(user_code),
        verification_uri=str(uri),
        verification_uri_complete=complete if isinstance(complete, str) and complete else None,
        expires_at=now + timedelta(seconds=lifetime),
        interval=interval,
    )


def _seconds(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)) and value >= 0:
        return float(value)
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return number if number >= 0 else None
    return None


def refresh_margin(issued_at: datetime, expires_at: datetime) -> timedelta:
    """How long before expiry a token is refreshed: 5 minutes, or a tenth of its lifetime
    when that is shorter (a 60 s token is refreshed with 6 s left)."""
    lifetime = max(expires_at - issued_at, timedelta(0))
    return min(REFRESH_MARGIN_MAX, lifetime * REFRESH_MARGIN_SHARE)


def needs_refresh(issued_at: datetime, expires_at: datetime, now: datetime) -> bool:
    """Whether an access token should be replaced before it is used at `now`."""
    return expires_at - now <= refresh_margin(issued_at, expires_at)


def next_interval(interval: float, outcome: Outcome) -> float:
    """The device flow's polling interval after an answer (slow_down adds 5 s)."""
    return interval + SLOW_DOWN_STEP if outcome is Outcome.SLOW_DOWN else interval


# ---------------------------------------------------------------------------- browser sign-in


@dataclass(frozen=True)
class BrowserRequest:
    """One browser sign-in: the address the owner opens, and what must come back."""

    url: str
    redirect_uri: str
    state: str = field(repr=False)
    verifier: str = field(repr=False)  # PKCE code_verifier, sent with the code


def pkce_challenge(verifier: str) -> str:
    """RFC 7636 4.2, S256: base64url(SHA-256(verifier)) without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def browser_request(
    *, provider: str, authorization_url: str, client_id: str, scope: str, redirect_uri: str,
    state: str, verifier: str, login_hint: str = "",
) -> BrowserRequest:  # fmt: skip
    """The authorization request (RFC 6749 4.1.1 with PKCE). `state` and `verifier` are
    random strings the caller makes (43+ URL-safe characters). Google returns a refresh
    token only when asked for offline access with a consent prompt."""
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": scope,
        "state": state,
        "code_challenge": pkce_challenge(verifier),
        "code_challenge_method": "S256",
    }
    if login_hint:
        query["login_hint"] = login_hint
    if provider == "google":
        query.update(access_type="offline", prompt="consent")
    separator = "&" if "?" in authorization_url else "?"
    url = authorization_url + separator + urllib.parse.urlencode(query)
    return BrowserRequest(url, redirect_uri, state, verifier)


class RedirectRefused(ValueError):
    """The browser came back without a usable code (says why, safe to show)."""


class StrayRequest(RedirectRefused):
    """A request that is not this sign-in's answer (its `state` differs): ignored, so a
    stale tab or another page cannot end the sign-in."""


def code_from_redirect(query: str, expected_state: str) -> str:
    """The authorization code from the redirect's query string (RFC 6749 4.1.2), after
    checking `state`; RedirectRefused for a denial, an error or a forged request."""
    fields = urllib.parse.parse_qs(query, keep_blank_values=True)

    def one(name: str) -> str:
        values = fields.get(name, [])
        return values[0] if len(values) == 1 else ""

    if not hmac.compare_digest(one("state").encode(), expected_state.encode()):
        raise StrayRequest("the answer does not belong to this sign-in (state differs)")
    if one("error"):
        description = one("error_description").splitlines()[0][:200] if one("error_description") else ""
        raise RedirectRefused(f"{one('error')}: {description}" if description else one("error"))
    code = one("code")
    if not code:
        raise RedirectRefused("the answer carries no authorization code")
    return code


# ---------------------------------------------------------------------------- SASL

XOAUTH2 = "XOAUTH2"
OAUTHBEARER = "OAUTHBEARER"


def xoauth2(user: str, access_token: str) -> bytes:
    """The XOAUTH2 initial client response (before base64): user, bearer token."""
    return f"user={user}\x01auth=Bearer {access_token}\x01\x01".encode()


def oauthbearer(
    user: str, access_token: str, host: str | None = None, port: int | None = None
) -> bytes:
    """The OAUTHBEARER initial client response (RFC 7628 3.1; before base64)."""
    authzid = user.replace("=", "=3D").replace(",", "=2C")  # RFC 5801 saslname
    pairs = ""
    if host:
        pairs += f"host={host}\x01"
    if port:
        pairs += f"port={port}\x01"
    return f"n,a={authzid},\x01{pairs}auth=Bearer {access_token}\x01\x01".encode()


def mechanism(offered: Iterable[str]) -> str:
    """Which SASL mechanism to use: XOAUTH2 when offered (what Google and Microsoft both
    accept), else OAUTHBEARER when offered, else XOAUTH2 anyway (servers that accept it
    do not always advertise it)."""
    names = {name.upper() for name in offered}
    if XOAUTH2 in names:
        return XOAUTH2
    if OAUTHBEARER in names:
        return OAUTHBEARER
    return XOAUTH2


def sasl_response(mech: str, user: str, access_token: str, host: str, port: int) -> bytes:
    if mech == OAUTHBEARER:
        return oauthbearer(user, access_token, host, port)
    return xoauth2(user, access_token)
