"""`init` offers OAuth 2.0 for the Google and Microsoft 365 presets, with the scopes and
the next steps; what it writes passes `check`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from gateway.config import load
from tests.mailtools import init_credentials


@pytest.mark.parametrize(("provider", "flags", "oauth_provider"), [
    ("microsoft365", [], "microsoft"),  # passwords are refused there: OAuth by default
    ("gmail", ["--auth", "oauth2"], "google"),
])  # fmt: skip
def test_init_writes_an_oauth_config_that_passes_check(
    run_cli: Callable[..., Result], tmp_path: Path, provider: str, flags: list[str], oauth_provider: str
) -> None:
    target = tmp_path / "conf"
    result = run_cli("init", "--dir", str(target), "--non-interactive", "--address", "help@beans.example",
                     "--provider", provider, *flags)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "sla-gateway --config" in result.output and "login" in result.output
    path = target / "gateway.toml"
    missing = run_cli("--config", str(path), "check", env={"CREDENTIALS_DIRECTORY": None})
    assert missing.exit_code == 2 and "oauth.token_key_file: cannot read oauth-token-key" in missing.output
    assert run_cli("--config", str(path), "check", env=init_credentials(tmp_path)).exit_code == 0
    config = load(path)
    imap = config.inboxes[0].imap
    assert imap is not None and imap.auth == "oauth2" and imap.oauth is not None
    assert imap.oauth.provider == oauth_provider
    assert config.send.auth == "oauth2" and config.send.oauth == imap.oauth  # one sign-in for both
    assert config.oauth.key.file == "oauth-token-key"
    text = path.read_text()
    assert "password_file" not in text
    scope = "IMAP.AccessAsUser.All, SMTP.Send, offline_access" if provider == "microsoft365" else "https://mail.google.com/"
    assert scope in text


def test_init_asks_how_to_sign_in_for_gmail(run_cli: Callable[..., Result], tmp_path: Path) -> None:
    answers = "Tea Shop\nsupport@tea.example\nen\nEurope/Paris\nFR\n10:00-18:00\ngmail\npassword\n"
    result = run_cli("init", "--dir", str(tmp_path / "c"), input=answers)
    assert result.exit_code == 0, result.output
    assert "Sign in with (password, oauth2)" in result.output
    text = (tmp_path / "c" / "gateway.toml").read_text()
    assert 'password_file = "imap-password"' in text and "oauth2" not in text
