"""The edges a new shop owner touches in the first hour: readable errors, `init`, the
maildir outbox, the tables' width, `status` times, the listener's SIZE, `make run`.

Commands are driven through click's runner; the listener cases use real sockets."""

from __future__ import annotations

import mailbox
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import Result

from gateway.outbox import MaildirTransport
from tests.mailtools import gateway_config

Cli = Callable[..., Result]

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
MAIL = b"From: shop@shop.example\r\nTo: kim@customer.example\r\nSubject: Hi\r\n\r\nHello\r\n"


# ---------------------------------------------------------------------------- maildir


def test_maildir_transport_makes_its_folders_in_an_existing_empty_directory(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    outbox.mkdir()  # what `check --connect` leaves behind: a directory, not yet a maildir
    transport = MaildirTransport(outbox)
    transport.send("shop@shop.example", "kim@customer.example", MAIL)
    transport.close()
    assert {p.name for p in outbox.iterdir()} >= {"tmp", "new", "cur"}
    assert len(list((outbox / "new").iterdir())) == 1


def test_check_connect_then_sending_works_on_the_maildir(
    run_cli: Cli, tmp_path: Path, database_url: str
) -> None:
    config = gateway_config(tmp_path, database_url)
    result = run_cli("--config", str(config.path), "check", "--connect")
    assert "sending (maildir): writable" in result.output, result.output
    transport = MaildirTransport(config.send.path)
    transport.send("shop@shop.example", "kim@customer.example", MAIL)
    assert len(mailbox.Maildir(config.send.path, create=False)) == 1


# ---------------------------------------------------------------------------- status


def test_status_prints_every_time_in_the_shop_zone_in_whole_seconds(
    run_cli: Cli, tmp_path: Path, database_url: str
) -> None:
    import re
    from datetime import UTC, datetime

    from gateway import store
    from tests.conftest import FIXED_NOW

    config = gateway_config(tmp_path, database_url)
    engine = store.make_engine(config.database)
    store.upgrade(engine)
    started = datetime(2026, 11, 23, 7, 58, 1, 123456, tzinfo=UTC)
    beat = datetime(2026, 11, 23, 8, 59, 30, 654321, tzinfo=UTC)
    with store.begin(engine) as conn:
        conn.execute(store.heartbeats.insert().values(name="service", pid=4242, host="shop-server",
                                                      started_at=started, beat_at=beat))  # fmt: skip
        conn.execute(store.sync_state.insert().values(inbox="shop", folder="INBOX", uidvalidity=1,
                                                      last_uid=7, updated_at=beat))  # fmt: skip
    engine.dispose()
    result = run_cli("--config", str(config.path), "status", now=FIXED_NOW)
    assert result.exit_code == 0, result.output
    assert "since 2026-11-23 08:58:01 CET)" in result.output
    assert "imap shop/INBOX: last sync 2026-11-23 09:59:30 CET (uid 7)" in result.output
    assert not re.search(r"\d\d:\d\d:\d\d\.\d", result.output)  # no microseconds anywhere
    assert "+00:00" not in result.output
    later = run_cli("--config", str(config.path), "status", now=datetime(2026, 11, 23, 10, tzinfo=UTC))
    assert "service: NOT running (last seen 2026-11-23 09:59:30 CET)" in later.output


def test_oauth_sign_in_line_in_the_shop_zone() -> None:
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from gateway.tokens import TokenState

    state = TokenState("support@shop.example", "shop", True, "active",
                       obtained_at=datetime(2026, 11, 23, 8, 0, 5, 250000, tzinfo=UTC),
                       access_expires_at=datetime(2026, 11, 23, 9, 0, 5, 250000, tzinfo=UTC))  # fmt: skip
    now = datetime(2026, 11, 23, 8, 30, tzinfo=UTC)
    assert state.describe(now, ZoneInfo("Europe/Berlin")) == (
        "signed in 2026-11-23 09:00:05 CET; access token valid until 2026-11-23 10:00:05 CET")
    assert state.describe(now).startswith("signed in 2026-11-23 08:00:05 UTC;")


# ---------------------------------------------------------------------------- SIZE


def _ehlo_size(config: object, message_sizes: tuple[int, ...] = ()) -> tuple[int, list[int]]:
    """Start the listener, read its EHLO SIZE, send messages of these exact sizes (bytes
    on the wire); returns the SIZE and each message's answer code."""
    import smtplib
    from datetime import UTC, datetime

    from gateway.service import Service

    service = Service(config, clock=lambda: datetime(2026, 11, 23, 9, tzinfo=UTC))  # type: ignore[arg-type]
    service.start(workers=False)
    codes = []
    try:
        listen = service.config.listen
        assert listen is not None
        with smtplib.SMTP(listen.host, listen.port, timeout=10) as client:
            client.ehlo()
            size = int(client.esmtp_features["size"])
            for n in message_sizes:
                head = b"From: kim@customer.example\r\nTo: support@shop.example\r\nSubject: x\r\n\r\n"
                rest = n - len(head)
                body = b"".join(b"a" * (min(78, rest - at) - 2) + b"\r\n" for at in range(0, rest, 78))
                assert len(head + body) == n
                try:
                    client.sendmail("kim@customer.example", ["support@shop.example"], head + body)
                    codes.append(250)
                except smtplib.SMTPResponseException as exc:  # at MAIL (its SIZE=) or DATA
                    codes.append(exc.smtp_code)
                    client.rset()
    finally:
        service.close()
    return size, codes


def test_listener_announces_the_limit_it_enforces_in_bytes(tmp_path: Path, database_url: str) -> None:
    config = gateway_config(tmp_path, database_url,
                            extra={'max_message_size = "25MB" ': 'max_message_size = "2KB" '})  # fmt: skip
    size, codes = _ehlo_size(config, (2000, 2001))
    assert size == 2000 == config.listen.max_message_size  # type: ignore[union-attr]
    assert codes == [250, 552]


def test_default_size_is_the_one_the_readme_and_example_state(tmp_path: Path, database_url: str) -> None:
    import re

    from tests.conftest import ROOT

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    row = next(line for line in readme.splitlines() if line.startswith("| `listen.max_message_size`"))
    stated = re.search(r'`"25MB"` is ([\d,]+) bytes', row)  # the generated table's wording
    assert stated, row
    announced = re.search(r"`SIZE (\d+)`", row)
    assert announced, row
    default = gateway_config(tmp_path, database_url, extra={'max_message_size = "25MB" ': ""})
    size, _ = _ehlo_size(default)
    assert size == int(stated.group(1).replace(",", "")) == int(announced.group(1))
    example = gateway_config(tmp_path, database_url)
    assert example.listen is not None and example.listen.max_message_size == size


# ---------------------------------------------------------------------------- readable errors


def _one_error_line(result: Result) -> str:
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error")]
    assert len(lines) == 1, result.output
    return lines[0]


def test_deliver_with_nothing_listening_says_so(run_cli: Cli, tmp_path: Path, database_url: str) -> None:
    from tests.conftest import DATA
    from tests.mailtools import free_port

    port = free_port()  # nothing listens there
    config = gateway_config(tmp_path, database_url, listen_port=port)
    result = run_cli("--config", str(config.path), "deliver", str(DATA / "customer" / "gmail_plain_refund.eml"))
    assert result.exit_code == 75
    line = _one_error_line(result)
    assert f"cannot deliver to 127.0.0.1:{port}" in line and "sla-gateway run" in line


def test_run_with_the_port_taken_says_so(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = gateway_config(tmp_path, f"sqlite:///{tmp_path / 'gateway.db'}", listen_port=port)
        run = subprocess.run([sys.executable, "-c", "from gateway.cli import main; main()",
                              "--config", str(config.path), "run"],
                             capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert run.returncode == 75, run.stderr
    assert "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1] == (
        f"error (temporary, try again): cannot listen on 127.0.0.1:{port}: another program "
        "(or another sla-gateway) is already listening there — stop it, or set another port in [listen]")


def test_config_path_that_is_a_directory(run_cli: Cli, tmp_path: Path) -> None:
    result = run_cli("--config", str(tmp_path), "check")
    assert result.exit_code == 2
    assert _one_error_line(result) == (f"error: {tmp_path}: is a directory, not a configuration file; "
                                       f"pass the file itself, e.g. --config {tmp_path / 'gateway.toml'}")  # fmt: skip
    from_env = run_cli("status", env={"SLA_GATEWAY_CONFIG": str(tmp_path)})
    assert from_env.exit_code == 2 and "is a directory (from $SLA_GATEWAY_CONFIG)" in _one_error_line(from_env)


IMAP = {"# [inbox.imap]\n": '[inbox.imap]\nhost = "127.0.0.1"\nport = 993\nusername = "support@shop.example"\n'
                            'password_file = "imap-password"\n'}  # fmt: skip


def test_unreadable_password_file_names_the_paths_tried(
    run_cli: Cli, tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    config = gateway_config(tmp_path, database_url, extra=IMAP)
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    monkeypatch.chdir(tmp_path)  # relative names are also tried from the working directory
    with_dir = run_cli("--config", str(config.path), "check", env={"CREDENTIALS_DIRECTORY": str(credentials)})
    assert with_dir.exit_code == 2
    assert _one_error_line(with_dir) == (
        f"error: (config): inbox[0].imap.password_file: cannot read imap-password: not in "
        f"$CREDENTIALS_DIRECTORY ({credentials}), and {tmp_path / 'imap-password'}: No such file or directory; "
        "put the file there (the unit's LoadCredential=) or give an absolute path")
    without = run_cli("--config", str(config.path), "check", env={"CREDENTIALS_DIRECTORY": None})  # type: ignore[dict-item]
    assert without.exit_code == 2
    assert "cannot read imap-password: $CREDENTIALS_DIRECTORY is not set, and " in _one_error_line(without)
    started = run_cli("--config", str(config.path), "run", env={"CREDENTIALS_DIRECTORY": str(credentials)})
    assert started.exit_code == 2 and "inbox[0].imap.password_file" in _one_error_line(started)
    (credentials / "imap-password").write_text("secret\n")
    fine = run_cli("--config", str(config.path), "check", env={"CREDENTIALS_DIRECTORY": str(credentials)})
    assert fine.exit_code == 0, fine.output
    (credentials / "imap-password").chmod(0)
    if os.geteuid() != 0:  # root reads any file
        denied = run_cli("--config", str(config.path), "check", env={"CREDENTIALS_DIRECTORY": str(credentials)})
        assert f"cannot read {credentials / 'imap-password'}: Permission denied" in _one_error_line(denied)


def test_check_reports_an_unset_password_env(run_cli: Cli, tmp_path: Path, database_url: str) -> None:
    config = gateway_config(tmp_path, database_url, extra={
        '# password_env = "SLA_GATEWAY_IMAP_PASSWORD"    # or password_file = "/run/credentials/sla-gateway/imap"':
        'password_env = "SLA_GATEWAY_IMAP_PASSWORD"',
        "# [inbox.imap]\n": '[inbox.imap]\nhost = "127.0.0.1"\nport = 993\nusername = "support@shop.example"\n'})  # fmt: skip
    result = run_cli("--config", str(config.path), "check", env={"SLA_GATEWAY_IMAP_PASSWORD": None})  # type: ignore[dict-item]
    assert result.exit_code == 2
    assert _one_error_line(result) == (
        "error: (environment): inbox[0].imap.password_env: $SLA_GATEWAY_IMAP_PASSWORD is not set or empty; "
        "export SLA_GATEWAY_IMAP_PASSWORD=... before starting sla-gateway")
    fine = run_cli("--config", str(config.path), "check", env={"SLA_GATEWAY_IMAP_PASSWORD": "pw"})
    assert fine.exit_code == 0, fine.output


# ---------------------------------------------------------------------------- start-up log


def test_start_up_log_has_no_alembic_chatter(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    from gateway import store
    from gateway.cli import setup_logging

    root, alembic = logging.getLogger(), logging.getLogger("alembic")
    handlers, level, alembic_level = root.handlers[:], root.level, alembic.level
    try:
        setup_logging("text")  # what `run` does before it migrates the database
        engine = store.make_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
        store.upgrade(engine)
        engine.dispose()
        logging.getLogger("sla_gateway.service").info("event=started")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        alembic.setLevel(alembic_level)
    err = capsys.readouterr().err
    assert "event=started" in err  # our own INFO lines still show
    assert "alembic" not in err and "Running upgrade" not in err


# ---------------------------------------------------------------------------- width

LONG_SUBJECT = "Order 12345 never arrived although the tracking page says it was delivered yesterday"
LONG_CUSTOMER = "anna.schmidt-mueller@customer-mail.example"


@pytest.fixture
def two_tickets(tmp_path: Path, database_url: str) -> Path:
    from datetime import timedelta
    from zoneinfo import ZoneInfo

    from gateway import store

    config = gateway_config(tmp_path, database_url)
    engine = store.make_engine(database_url)
    store.upgrade(engine)
    berlin = ZoneInfo("Europe/Berlin")
    with engine.begin() as conn:
        for n, (customer, subject) in enumerate([(LONG_CUSTOMER, LONG_SUBJECT), ("kim@customer.example", "Hi")]):
            received = datetime(2026, 11, 23, 9, n, tzinfo=berlin)
            due = received + timedelta(hours=1)
            conv = conn.execute(store.conversations.insert().values(
                reference=f"SHOP-{1001 + n}", inbox="shop", customer=customer, subject=subject, priority="high",
                priority_reason="", state="awaiting_team", received_at=received, window_seconds=3600, stretch=1.0,
                due_at=due, first_reply_at=None, first_reply_business_seconds=None, breached=False,
                created_at=received)).inserted_primary_key[0]  # fmt: skip
            conn.execute(store.cycles.insert().values(
                conversation_id=conv, kind="first", priority="high", started_at=received, window_seconds=3600,
                stretch=1.0, due_at=due, warn_at=None, replied_at=None, business_seconds=None, breached=False,
                warned_at=None, breach_alerted_at=None))  # fmt: skip
    engine.dispose()
    return config.path


@pytest.mark.parametrize("columns", [80, 100, 120, 160, 200])
def test_tickets_use_the_terminal_width_and_cut_only_between_words(
    run_cli: Cli, two_tickets: Path, columns: int
) -> None:
    result = run_cli("--config", str(two_tickets), "tickets", now=NOW, env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= columns, lines
    row = next(line for line in lines if line.startswith("SHOP-1001"))
    tokens = row.split()
    assert tokens[:8] == ["SHOP-1001", "high", "BREACHED", "Mon", "23", "Nov", "10:00", "—"], row
    for token in tokens[8:]:  # customer and subject: every word whole; an address cut after "@" or "."
        word = token.rstrip("…")
        if not word:
            continue
        assert word in LONG_SUBJECT.split() or word == LONG_CUSTOMER or (
            LONG_CUSTOMER.startswith(word) and word[-1] in "@."), (token, row)
    if columns >= 120:
        assert "Order 12345 never arrived" in row and "anna.schmidt-mueller@" in row  # visible
    if columns >= 160:
        assert LONG_CUSTOMER in row
    if columns >= 200:
        assert LONG_SUBJECT in row
    assert "kim@customer.example" in result.output or columns < 100


@pytest.mark.parametrize("columns", [50, 80, 160])
def test_report_uses_the_terminal_width_and_wraps_between_words(
    run_cli: Cli, two_tickets: Path, columns: int
) -> None:
    result = run_cli("--config", str(two_tickets), "report", "--since", "2026-11-23", "--until", "2026-11-23",
                     now=NOW, env={"COLUMNS": str(columns)})  # fmt: skip
    assert result.exit_code == 0, result.output
    headline = "2026-11-23 – 2026-11-23: 2 conversations, 0% of first replies on time, 0 acknowledged"
    out = result.output
    assert " ".join(out.split()).startswith(headline)  # wrapped only where it had a space
    assert "…" not in out
    assert "Priority  Target  Count  Met  Missed  On time  Median" in out  # every header whole
    assert (headline in out) == (columns >= len(headline))


# ---------------------------------------------------------------------------- init


def test_init_checks_each_answer_as_it_is_typed(run_cli: Cli, tmp_path: Path) -> None:
    answers = [
        "Tea Shop",
        "support@tea", "support@tea.example",  # not an address, then one
        "klingon", "de",  # the acknowledgments' language
        "Europe/Pariss", "paris", "Europe/Paris",  # near misses get a suggestion
        "XX", "FR",
        "9-5", "10:00-18:00",
        "gmial", "fastmail",
    ]  # fmt: skip
    result = run_cli("init", "--dir", str(tmp_path / "c"), input="\n".join(answers) + "\n")
    assert result.exit_code == 0, result.output
    out = result.output
    assert 'Error: "support@tea" is not an e-mail address' in out
    assert "Acknowledgment language (en, de, fr, es, nl) [en]:" in out
    assert 'Error: "klingon" is not a language the acknowledgments are written in; use one of en, de, fr, es, nl' in out
    assert 'Error: "Europe/Pariss" is not a known time zone; did you mean "Europe/Paris"' in out
    assert 'Error: "paris" is not a known time zone; did you mean "Europe/Paris"?' in out
    assert 'Error: "XX" is not a known country code' in out
    assert 'Error: "9" is not a time of day like "09:00"' in out
    assert 'Error: "gmial" is not one of gmail, fastmail' in out
    text = (tmp_path / "c" / "gateway.toml").read_text()
    assert 'language = "de"' in text and 'timezone = "Europe/Paris"' in text and 'mon = "10:00-18:00"' in text
    assert 'holidays = "FR"' in text and 'address = "support@tea.example"' in text


def test_init_refuses_an_existing_file_before_asking(run_cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "gateway.toml").write_text("# mine\n")
    result = run_cli("init", "--dir", str(tmp_path / "c"), input="Tea Shop\n")
    assert result.exit_code == 2
    assert "Shop name" not in result.output  # nothing was asked
    assert f"error: {tmp_path / 'c' / 'gateway.toml'} exists; use --force to overwrite it" in result.output
    assert (tmp_path / "c" / "gateway.toml").read_text() == "# mine\n"
    assert not (tmp_path / "c" / "templates").exists()


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--timezone", "Europe/Berln", 'Invalid value for --timezone: "Europe/Berln" is not a known time zone; '
                                   'did you mean "Europe/Berlin"?'),
    ("--address", "support", 'Invalid value for --address: "support" is not an e-mail address'),
    ("--hours", "09:00-25:00", 'Invalid value for --hours: "25:00" is not a valid time of day'),
    ("--language", "it", 'Invalid value for --language: "it" is not a language'),
    ("--country", "DE-XX", 'Invalid value for --country: "XX" is not a subdivision of DE'),
])  # fmt: skip
def test_init_with_a_bad_flag_writes_nothing(run_cli: Cli, tmp_path: Path, flag: str, value: str,
                                             message: str) -> None:  # fmt: skip
    target = tmp_path / "new"
    result = run_cli("init", "--dir", str(target), "--non-interactive", flag, value)
    assert result.exit_code == 2
    assert message in result.output, result.output
    assert "Traceback" not in result.output
    assert not target.exists()  # nothing written, not even the directory


def test_check_connect_on_a_fresh_config(run_cli: Cli, tmp_path: Path, database_url: str) -> None:
    from tests.mailtools import free_port

    port = free_port()  # no IMAP server there
    secret = tmp_path / "imap-password"
    secret.write_text("pw")
    config = gateway_config(tmp_path, database_url, extra={"# [inbox.imap]\n": (
        f'[inbox.imap]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\n'
        f'username = "support@shop.example"\npassword_file = "{secret}"\ntimeout = "5s"\n')})  # fmt: skip
    result = run_cli("--config", str(config.path), "check", "--connect")
    out = result.output
    assert "OK      database: reachable, no schema yet — `sla-gateway run` (or `db upgrade`) creates it" in out
    assert "PROBLEM database" not in out
    assert f"PROBLEM IMAP shop (support@shop.example on 127.0.0.1:{port}): cannot connect" in out
    assert "support@shop.example@" not in out  # the login, then the host: no doubled @
