"""The command line, driven through click's runner with a fixed clock."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from click.testing import Result

from gateway import store
from tests.conftest import DATA, EXAMPLE

Cli = Callable[..., Result]


def test_due_prints_one_deadline_per_at(run_cli: Cli) -> None:
    result = run_cli(
        "--config",
        str(EXAMPLE),
        "due",
        "--priority",
        "normal",
        "--at",
        "2026-11-20T16:00:00+01:00",
        "--at",
        "2026-11-20T12:00:00Z",
    )
    assert result.exit_code == 0, result.output
    assert result.output == "2026-11-21T13:00:00+01:00\n2026-11-20T17:00:00+01:00\n"


def test_due_reads_stdin_and_takes_shop_time_without_offset(run_cli: Cli) -> None:
    result = run_cli(
        "--config",
        str(EXAMPLE),
        "due",
        "-p",
        "urgent",
        "--at",
        "-",
        input="2026-11-23T16:45\n\n2026-12-24 10:00\n",
    )
    assert result.exit_code == 0, result.output
    assert result.output == "2026-11-24T09:15:00+01:00\n2026-12-28T09:30:00+01:00\n"


def test_due_rejects_bad_input_clearly(run_cli: Cli) -> None:
    result = run_cli("--config", str(EXAMPLE), "due", "-p", "urgent", "--at", "tomorrow")
    assert result.exit_code == 2
    assert '"tomorrow" is not an ISO 8601 time' in result.output
    result = run_cli("--config", str(EXAMPLE), "due", "-p", "critical", "--at", "2026-11-23T10:00")
    assert result.exit_code == 2
    assert '"critical" is not one of urgent, high, normal, low' in result.output


CUSTOMER_MAIL = (
    b"Return-Path: <kim@customer.example>\r\n"
    b"From: Kim <kim@customer.example>\r\nTo: support@shop.example\r\n"
    b"Subject: I was charged twice\r\nDate: Fri, 20 Nov 2026 16:40:00 +0100\r\n"
    b"Message-ID: <abc123@customer.example>\r\n\r\nPlease help.\r\n"
)


def test_inspect_json(run_cli: Cli, tmp_path: Path) -> None:
    good = tmp_path / "good.eml"
    good.write_bytes(CUSTOMER_MAIL)
    junk = tmp_path / "junk.eml"
    junk.write_bytes(b"\x00\x01\x02 not a mail\n\nat all")
    missing = tmp_path / "missing.eml"
    result = run_cli("--config", str(EXAMPLE), "inspect", "--json", str(junk), str(good))
    assert result.exit_code == 1  # one file could not be used; the rest was processed
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert lines[0] == {"file": str(junk), "error": "not an e-mail message: no header lines found"}
    item = lines[1]
    assert item["file"] == str(good)
    assert item["message_id"] == "abc123@customer.example"
    assert item["from"] == "kim@customer.example"
    assert item["priority"] == "urgent"
    assert item["matched"] == ["subject: 'charged twice' → urgent"]
    # Friday 16:40 + 30 business minutes: 20 minutes Friday, 10 minutes Saturday from 10:00.
    assert item["due"] == "2026-11-21T10:10:00+01:00"
    result = run_cli("--config", str(EXAMPLE), "inspect", "--json", str(missing))
    assert result.exit_code == 1
    assert json.loads(result.output) == {"file": str(missing), "error": "No such file or directory"}


def test_inspect_goes_on_over_hostile_files(run_cli: Cli, tmp_path: Path) -> None:
    """Every hostile fixture gets its own answer; one unusable file stops nothing (issue 11)."""
    good = tmp_path / "good.eml"
    good.write_bytes(CUSTOMER_MAIL)
    broken = sorted((DATA / "broken").glob("*.eml"))
    files = [str(p) for p in broken] + [str(good)]
    result = run_cli("--config", str(EXAMPLE), "inspect", "--json", *files)
    assert result.exit_code == 1  # binary_junk.eml is no e-mail message
    lines = {item["file"]: item for item in map(json.loads, result.output.splitlines())}
    assert list(lines) == files
    junk = str(DATA / "broken" / "binary_junk.eml")
    assert lines[junk] == {"file": junk, "error": "not an e-mail message: no header lines found"}
    for name, item in lines.items():
        if name not in (junk, str(good)):
            assert item["defects"], name
    assert lines[str(good)]["priority"] == "urgent"


def test_inspect_at_overrides_date(run_cli: Cli, tmp_path: Path) -> None:
    good = tmp_path / "good.eml"
    good.write_bytes(CUSTOMER_MAIL)
    result = run_cli(
        "--config", str(EXAMPLE), "inspect", "--json", "--at", "2026-11-23T09:00+01:00", str(good)
    )
    assert result.exit_code == 0
    assert json.loads(result.output)["due"] == "2026-11-23T09:30:00+01:00"


def test_inspect_text_output(run_cli: Cli, tmp_path: Path) -> None:
    good = tmp_path / "good.eml"
    good.write_bytes(CUSTOMER_MAIL)
    result = run_cli("--config", str(EXAMPLE), "inspect", str(good))
    assert result.exit_code == 0
    assert "priority:   urgent — subject: 'charged twice' → urgent" in result.output
    assert "due:        2026-11-21T10:10:00+01:00 (30 minutes of business time)" in result.output


def test_db_upgrade(run_cli: Cli, write_config: Callable[[str], Path], database_url: str) -> None:
    text = EXAMPLE.read_text().replace(
        'database = "sqlite:///var/sla-gateway.db"', f'database = "{database_url}"'
    )
    path = write_config(text)
    result = run_cli("--config", str(path), "db", "upgrade")
    assert result.exit_code == 0, result.output
    assert f"at revision {store.head_revision()}" in result.output
    assert "password" not in result.output


def test_version_and_help(run_cli: Cli) -> None:
    assert run_cli("--version").output.startswith("sla-gateway, version")
    out = run_cli("--help").output
    for command in ("check", "due", "inspect", "db"):
        assert command in out


def test_each_command_closes_the_database_it_opened(
    run_cli: Cli, write_config: Callable[[str], Path], tmp_path: Path
) -> None:
    """The engine made for a command is disposed of when it ends: on SQLite the last
    connection to close removes the write-ahead log, so none is left behind."""
    database = tmp_path / "gateway.db"
    text = EXAMPLE.read_text().replace(
        'database = "sqlite:///var/sla-gateway.db"', f'database = "sqlite:///{database}"'
    )
    path = write_config(text)
    wal = tmp_path / "gateway.db-wal"
    for args in (("db", "upgrade"), ("status",), ("tickets", "--json"), ("report", "--json")):
        result = run_cli("--config", str(path), *args)
        assert result.exit_code == 0, result.output
        assert database.exists()
        assert not wal.exists(), f"{args}: the database is still open"


def test_bad_arguments_found_in_the_day_one_review(
    run_cli: Cli, write_config: Callable[[str], Path], database_url: str, tmp_path: Path
) -> None:
    """Each one line saying what is wrong (exit 2), never a traceback: an --out in a
    folder that does not exist, a --send-test that is no address (or without --connect),
    a port that cannot be; and `tickets` with nothing to list says so."""
    config = str(write_config(EXAMPLE.read_text().replace(
        'database = "sqlite:///var/sla-gateway.db"', f'database = "{database_url}"')))  # fmt: skip
    assert run_cli("--config", config, "db", "upgrade").exit_code == 0
    missing = tmp_path / "no-such-folder" / "page.html"
    for args in (("digest", "--out", str(missing)), ("policy", "--format", "html", "--out", str(missing))):
        result = run_cli("--config", config, *args)
        assert result.exit_code == 2, result.output
        assert f"cannot write {missing}: No such file or directory" in result.output
        assert not missing.parent.exists()
    result = run_cli("--config", config, "check", "--connect", "--send-test", "notanaddress")
    assert result.exit_code == 2 and '"notanaddress" is not an e-mail address' in result.output
    result = run_cli("--config", config, "check", "--send-test", "owner@shop.example")
    assert result.exit_code == 2 and "give both" in result.output
    result = run_cli("--config", config, "deliver", "--port", "99999", str(DATA / "customer" / "vip_normal.eml"))
    assert result.exit_code == 2 and "99999 is not in the range" in result.output
    for args in (("tickets",), ("tickets", "--open", "--breached")):
        result = run_cli("--config", config, *args)
        assert result.exit_code == 0 and result.output == "no conversations to show\n"
    for result in (run_cli("--config", config, *a) for a in (("report",), ("status",), ("digest", "--text"))):
        assert result.exit_code == 0 and "Traceback" not in result.output
    report = run_cli("--config", config, "report").output
    assert "0 conversations, no first reply was due, 0 acknowledged" in " ".join(report.split())
    assert "—" not in report
    junk = tmp_path / "notes.txt"
    junk.write_text("just some notes\n")
    result = run_cli("--config", config, "replay", str(junk))
    assert result.exit_code == 2 and f"{junk}: this file holds no mail" in result.output


def test_an_unreachable_database_server_is_one_line(run_cli: Cli, write_config: Callable[[str], Path]) -> None:
    config = str(write_config(EXAMPLE.read_text().replace(
        'database = "sqlite:///var/sla-gateway.db"', 'database = "postgresql+psycopg://nobody@127.0.0.1:1/x"')))  # fmt: skip
    result = run_cli("--config", config, "status")
    assert result.exit_code == 75
    [line] = result.output.splitlines()
    assert line.startswith("error (temporary, try again): cannot migrate the database: connection failed")
    assert line.endswith("is the database server running and reachable?")
