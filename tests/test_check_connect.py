"""`check --connect` against the real peers: the test Dovecot, an SMTP sink, the database;
and clear answers (not tracebacks) for a wrong password and an unreachable server."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from click.testing import Result

from tests.imapserver import Dovecot
from tests.mailtools import Sink, free_port, gateway_config


def imap_section(dovecot: Dovecot, secret: Path) -> dict[str, str]:
    return {"# [inbox.imap]\n": (
        f'[inbox.imap]\nhost = "127.0.0.1"\nport = {dovecot.port}\nsecurity = "none"\n'
        f'username = "{dovecot.user}"\npassword_file = "{secret}"\ntimeout = "5s"\n'
    )}  # fmt: skip


def test_everything_reachable(tmp_path: Path, database_url: str, sink: Sink, dovecot: Dovecot,
                              run_cli: Callable[..., Result]) -> None:  # fmt: skip
    secret = tmp_path / "pw"
    secret.write_text(dovecot.password)
    config = gateway_config(
        tmp_path, database_url, sink_port=sink.port, extra=imap_section(dovecot, secret)
    )
    run_cli("--config", str(config.path), "db", "upgrade")
    result = run_cli(
        "--config", str(config.path), "check", "--connect", "--send-test", "owner@shop.example"
    )
    assert result.exit_code == 0, result.output
    assert "OK      database: reachable, schema current" in result.output
    assert "logged in; watching INBOX; Sent folder Sent" in result.output
    assert f"OK      sending (SMTP 127.0.0.1:{sink.port}, none): connected" in result.output
    assert "OK      test message to owner@shop.example: sent" in result.output
    assert [d.rcpt_tos for d in sink.received] == [["owner@shop.example"]]


def test_problems_are_named_with_the_fix(tmp_path: Path, database_url: str, dovecot: Dovecot,
                                         run_cli: Callable[..., Result]) -> None:  # fmt: skip
    secret = tmp_path / "pw"
    secret.write_text("wrong")
    config = gateway_config(
        tmp_path, database_url, sink_port=free_port(), extra=imap_section(dovecot, secret)
    )
    result = run_cli(
        "--config", str(config.path), "check", "--connect", "--send-test", "owner@shop.example"
    )
    assert result.exit_code == 1
    out = result.output
    # A fresh database is no problem: `run` creates the schema (issue 14).
    assert "OK      database: reachable, no schema yet — `sla-gateway run` (or `db upgrade`) creates it" in out
    assert "PROBLEM IMAP shop" in out and "the server refused the login" in out
    assert "PROBLEM sending (SMTP" in out and "cannot connect" in out
    assert "test message" not in out  # nothing is sent while something is wrong
    assert "Traceback" not in out
