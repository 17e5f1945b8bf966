"""`replay` rebuilds the resolution figures from saved mail: a team reply copied to
support+resolved@ resolves its conversation at the reply's time, one copied to
support+pending@ pauses the clock, and a conversation whose customer stopped writing is
resolved at the team's last reply once close_after has passed at the replay's "now".
`report --json` and `tickets REF` then say so; nothing is sent."""

from __future__ import annotations

import json
import mailbox
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from click.testing import Result

from gateway import store
from tests.mailtools import gateway_config
from tests.test_resolution import RESOLVE
from tests.test_tracking import AGENTS, at

H = 3600


def mail(sender: str, to: str, subject: str, date: str, message_id: str, body: str, *,
         cc: str = "", answers: str = "") -> bytes:  # fmt: skip
    head = f"From: {sender}\r\nTo: {to}\r\n" + (f"Cc: {cc}\r\n" if cc else "")
    head += f"Subject: {subject}\r\nDate: {date}\r\nMessage-ID: <{message_id}>\r\n"
    if answers:
        head += f"In-Reply-To: <{answers}>\r\nReferences: <{answers}>\r\n"
    return f"{head}\r\n{body}\r\n".encode()


def test_replay_counts_commands_and_close_after(
    tmp_path: Path, database_url: str, run_cli: Callable[..., Result]
) -> None:
    config = gateway_config(tmp_path, database_url, extra={**AGENTS, **RESOLVE})  # normal: resolve in 8 h
    source = tmp_path / "saved"
    box = mailbox.Maildir(source, create=True)
    anna = "Anna <anna@shop.example>"
    # Kim (SHOP-1001): asked Mon 09:00, answered 10:00 with a copy to +pending, the customer
    # answers Tue 11:00, resolved by address Tue 12:30.
    box.add(mail("Kim <kim@customer.example>", "support@shop.example", "Where is my parcel",
                 "Mon, 23 Nov 2026 09:00:00 +0100", "k1@customer.example", "It has not arrived."))  # fmt: skip
    box.add(mail(anna, "kim@customer.example", "Re: Where is my parcel", "Mon, 23 Nov 2026 10:00:00 +0100",
                 "a1@shop-mail.example", "Which size did you order", cc="support+pending@shop.example",
                 answers="k1@customer.example"))  # fmt: skip
    box.add(mail("Kim <kim@customer.example>", "support@shop.example", "Re: Where is my parcel",
                 "Tue, 24 Nov 2026 11:00:00 +0100", "k2@customer.example", "Size M.",
                 answers="a1@shop-mail.example"))  # fmt: skip
    box.add(mail(anna, "kim@customer.example", "Re: Where is my parcel", "Tue, 24 Nov 2026 12:30:00 +0100",
                 "a2@shop-mail.example", "Sent again today.", cc="support+resolved@shop.example",
                 answers="k2@customer.example"))  # fmt: skip
    # Lee: asked Mon 14:00, answered 15:00; the customer never writes again.
    box.add(mail("Lee <lee@customer.example>", "support@shop.example", "Invoice copy",
                 "Mon, 23 Nov 2026 14:00:00 +0100", "l1@customer.example", "Please send it again."))  # fmt: skip
    box.add(mail(anna, "lee@customer.example", "Re: Invoice copy", "Mon, 23 Nov 2026 15:00:00 +0100",
                 "a3@shop-mail.example", "Attached.", answers="l1@customer.example"))  # fmt: skip
    now = at(2026, 12, 4, 12, 0)  # more than close_after (7 days) after Lee's last word
    result = run_cli("--config", str(config.path), "replay", str(source), now=now)
    assert result.exit_code == 0, result.output
    assert "6 messages read, 6 new" in result.output

    rows = {r["customer"]: r for r in map(json.loads, run_cli(
        "--config", str(config.path), "tickets", "--json", now=now).output.splitlines())}  # fmt: skip
    kim, lee = rows["kim@customer.example"], rows["lee@customer.example"]
    assert (kim["state"], kim["resolved_at"], kim["resolved_by"]) == (
        "resolved", "2026-11-24T12:30:00+01:00", "anna@shop.example")  # fmt: skip
    assert (kim["resolution_business_seconds"], kim["customer_wait_business_seconds"]) == (H + 90 * 60, 9 * H)
    assert (lee["state"], lee["resolved_at"], lee["resolved_by"]) == (
        "resolved", "2026-11-23T15:00:00+01:00", "close_after")  # fmt: skip
    assert lee["resolution_business_seconds"] == H and not lee["resolution_breached"]

    figures = json.loads(run_cli("--config", str(config.path), "report", "--since", "2026-11-23",
                                 "--until", "2026-11-29", "--json", now=now).output)  # fmt: skip
    assert figures["resolution"]["priorities"]["normal"] == {
        "count": 2, "met": 2, "breached": 0, "compliance": 1.0,
        "p50_seconds": H, "p80_seconds": H + 90 * 60, "p90_seconds": H + 90 * 60, "target_seconds": 8 * H,
    }  # fmt: skip
    assert figures["backlog"] == {"open_at_start": 0, "opened": 2, "resolved": 2, "open_at_end": 0}

    timeline = json.loads(run_cli("--config", str(config.path), "tickets", "SHOP-1001", "--json", now=now).output)
    kinds = [e["kind"] for e in timeline["timeline"]]
    assert kinds.count("command") == 2 and kinds[-1] == "resolved", kinds
    assert "paused" in kinds and "resumed" in kinds
    assert timeline["timeline"][1]["text"] == "not acknowledged: replayed from saved mail, nothing is sent"
    quiet = json.loads(run_cli("--config", str(config.path), "tickets", lee["reference"], "--json", now=now).output)
    [resolved] = [e for e in quiet["timeline"] if e["kind"] == "resolved"]
    assert resolved["at"] == "2026-11-23T15:00:00+01:00" and resolved["by"] == "close_after"
    assert "resolution-breached" not in [e["kind"] for e in quiet["timeline"]]  # it stopped at 1 h of 8
    engine = store.make_engine(config.database)
    with engine.connect() as conn:  # rebuilt history sends nothing
        assert conn.execute(sa.select(sa.func.count()).select_from(store.outbox)).scalar_one() == 0
    engine.dispose()


def test_replay_resolves_a_quiet_conversation_before_the_customer_writes_again(
    tmp_path: Path, database_url: str, run_cli: Callable[..., Result]
) -> None:
    """In saved mail a customer answered after more than close_after: the running service
    would have resolved the case at the team's reply in between and reopened it then, so
    the silence does not count towards its resolution time."""
    config = gateway_config(tmp_path, database_url, extra={**AGENTS, **RESOLVE})
    source = tmp_path / "saved"
    box = mailbox.Maildir(source, create=True)
    anna = "Anna <anna@shop.example>"
    box.add(mail("Kim <kim@customer.example>", "support@shop.example", "Where is my parcel",
                 "Mon, 23 Nov 2026 09:00:00 +0100", "k1@customer.example", "It has not arrived."))  # fmt: skip
    box.add(mail(anna, "kim@customer.example", "Re: Where is my parcel", "Mon, 23 Nov 2026 10:00:00 +0100",
                 "a1@shop-mail.example", "It is on its way.", answers="k1@customer.example"))  # fmt: skip
    box.add(mail("Kim <kim@customer.example>", "support@shop.example", "Re: Where is my parcel",
                 "Thu, 03 Dec 2026 11:00:00 +0100", "k2@customer.example", "Still nothing!",
                 answers="a1@shop-mail.example"))  # ten days later  # fmt: skip
    now = at(2026, 12, 3, 12, 0)
    result = run_cli("--config", str(config.path), "replay", str(source), now=now)
    assert result.exit_code == 0, result.output
    [kim] = [json.loads(line) for line in run_cli(
        "--config", str(config.path), "tickets", "--json", now=now).output.splitlines()]  # fmt: skip
    assert (kim["state"], kim["resolved_at"]) == ("awaiting_team", None)  # reopened by the mail
    # 1 h up to the reply, then from Thursday 11:00 to 12:00: the ten quiet days are not counted.
    assert kim["resolution_business_seconds"] == 2 * H
    timeline = json.loads(run_cli("--config", str(config.path), "tickets", "SHOP-1001", "--json", now=now).output)
    kinds = [e["kind"] for e in timeline["timeline"]]
    assert kinds.index("resolved") < kinds.index("customer-message") < kinds.index("resumed"), kinds
