"""`sla-gateway login --browser`: the authorization code grant with PKCE, the browser sent
back to a loopback address on this machine (what Google needs for the mail scope, and what
works over SSH with a port forward). The real command in its own process, a real HTTP
client playing the browser, the test authorization server playing Google."""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from gateway import oauth
from tests import oauthconfig
from tests.imapserver import Dovecot
from tests.oauthconfig import oauth_config, stored_rows
from tests.oauthserver import OAuthServer

oauth_dovecot = oauthconfig.oauth_dovecot

SLA = str(Path(sys.executable).with_name("sla-gateway"))
USER = "support@shop.example"


def start_login(config_path: Path) -> tuple[subprocess.Popen[str], str]:
    """Run `login shop --browser --port 0`; return it and the address it tells us to open
    (what it printed up to there is in `printed`)."""
    process = subprocess.Popen(
        [SLA, "--config", str(config_path), "login", "shop", "--browser", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "SLA_GATEWAY_TOKEN_KEY": ""},
    )  # fmt: skip
    assert process.stdout is not None
    seen = printed[process.pid] = []
    for line in process.stdout:
        seen.append(line)
        if line.strip().startswith("http://127.0.0.1") and "/authorize?" in line:
            return process, line.strip()
    process.wait(10)
    raise AssertionError("no sign-in address printed:\n" + "".join(seen))


printed: dict[int, list[str]] = {}


def browse(url: str) -> tuple[int, str]:
    """Open an address as a browser would, following redirects; (status, page)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    """Its exit code and everything it printed (read through the same buffered pipe:
    `communicate` would skip what that buffer already holds)."""
    assert process.stdout is not None
    out = process.stdout.read()
    process.wait(30)
    return process.returncode, "".join(printed.pop(process.pid, [])) + out


def test_browser_login_with_pkce_stores_the_token(
    tmp_path: Path, database_url: str, oauth_server: OAuthServer, oauth_dovecot: Dovecot
) -> None:
    config = oauth_config(tmp_path, database_url, oauth_server, dovecot=oauth_dovecot)
    process, url = start_login(config.path)
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    assert query["code_challenge_method"] == "S256" and query["login_hint"] == USER
    assert query["redirect_uri"].startswith("http://127.0.0.1:")
    status, page = browse(url)  # the server redirects the browser back to the command
    assert status == 200 and "Signed in" in page
    code, out = finish(process)
    assert code == 0, out
    assert f"signed in {USER}" in out, out
    assert "ssh -L" in out, out
    [row] = stored_rows(database_url)
    assert row.username == USER and row.status == "active"
    [(_, form)] = [r for r in oauth_server.requests if r[0] == "/token"]
    assert form["grant_type"] == "authorization_code"
    assert form["redirect_uri"] == query["redirect_uri"]
    digest = hashlib.sha256(form["code_verifier"].encode()).digest()
    assert base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == query["code_challenge"]
    assert form["code"] not in out and form["code_verifier"] not in out


def test_declined_browser_login_stores_nothing(
    tmp_path: Path, database_url: str, oauth_server: OAuthServer, oauth_dovecot: Dovecot
) -> None:
    oauth_server.browser_user = None  # the owner clicks "Cancel"
    config = oauth_config(tmp_path, database_url, oauth_server, dovecot=oauth_dovecot)
    process, url = start_login(config.path)
    status, page = browse(url)
    assert status == 400 and "access_denied" in page
    code, out = finish(process)
    assert code != 0
    assert "access_denied" in out and "nothing was stored" in out and "Traceback" not in out
    assert stored_rows(database_url) == []


def test_stray_requests_are_refused_and_do_not_end_the_sign_in(
    tmp_path: Path, database_url: str, oauth_server: OAuthServer, oauth_dovecot: Dovecot
) -> None:
    """A request to the loopback address that did not come from this sign-in (another
    site's page, a stale tab) is refused and nothing is traded for it; an idle connection
    (a browser's preconnect) does not block the listener; the real answer still works."""
    config = oauth_config(tmp_path, database_url, oauth_server, dovecot=oauth_dovecot)
    process, url = start_login(config.path)
    back = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))["redirect_uri"]
    port = urllib.parse.urlsplit(back).port
    assert port is not None
    with socket.create_connection(("127.0.0.1", port)):  # opened, never used
        status, page = browse(back + "?code=stolen&state=not-ours")
        assert status == 400 and "state differs" in page
        status, page = browse(url)
        assert status == 200 and "Signed in" in page
    code, out = finish(process)
    assert code == 0, out
    [(_, form)] = [r for r in oauth_server.requests if r[0] == "/token"]
    assert form["code"] != "stolen"
    assert len(stored_rows(database_url)) == 1


def test_pkce_challenge_is_rfc_7636s_example() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"  # RFC 7636, Appendix B
    assert oauth.pkce_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_google_is_asked_for_offline_access() -> None:
    request = oauth.browser_request(
        provider="google", authorization_url=oauth.GOOGLE_AUTH_URL, client_id="id",
        scope=oauth.GOOGLE_SCOPE, redirect_uri="http://127.0.0.1:8765/", state="s" * 43,
        verifier="v" * 43,
    )  # fmt: skip
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(request.url).query))
    assert query["access_type"] == "offline" and query["prompt"] == "consent"
    assert query["scope"] == "https://mail.google.com/" and "v" * 43 not in request.url


@pytest.mark.parametrize(
    ("query", "why"),
    [
        ("code=abc&state=other", "state differs"),
        ("error=access_denied&state=ours", "access_denied"),
        ("state=ours", "no authorization code"),
        ("code=a&code=b&state=ours", "no authorization code"),
    ],
)
def test_redirects_without_a_usable_code_are_refused(query: str, why: str) -> None:
    with pytest.raises(oauth.RedirectRefused, match=why):
        oauth.code_from_redirect(query, "ours")
    assert oauth.code_from_redirect("code=abc&state=ours", "ours") == "abc"
