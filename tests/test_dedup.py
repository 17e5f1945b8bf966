"""What makes two deliveries one message (gateway.dedup), how the store keeps an envelope
that no database would take as text, and the migration that gives stored rows the new keys.
The end-to-end behaviour over sockets is in test_intake_loss.py."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import store
from gateway.dedup import dedup_key, identify
from tests.conftest import DATA

MAIL = (
    b"From: Kim <kim@customer.example>\r\nTo: support@shop.example\r\nSubject: Parcel\r\n"
    b"Date: Mon, 23 Nov 2026 10:00:00 +0100\r\nMessage-ID: <m1@customer.example>\r\n\r\n"
    b"Where is my parcel?\r\n"
)


def test_trace_headers_folding_and_line_endings_do_not_make_another_mail() -> None:
    copy = (
        b"Return-Path: <kim@customer.example>\r\nDelivered-To: support@shop.example\r\n"
        b"Received: from mx (mx [192.0.2.1])\r\n\tby imap; Mon, 23 Nov 2026 10:00:01 +0100\r\n"
        b"DKIM-Signature: v=1; d=shop.example; b=xyz\r\n" + MAIL.replace(b"Subject: Parcel", b"Subject:\r\n Parcel")
    )
    assert dedup_key(copy) == dedup_key(MAIL)
    assert dedup_key(MAIL.replace(b"\r\n", b"\n")) == dedup_key(MAIL)
    assert dedup_key(b"From somebody Mon Nov 23 10:00:00 2026\n" + MAIL) == dedup_key(MAIL)


def test_anything_the_sender_wrote_makes_another_mail() -> None:
    for changed in (
        MAIL.replace(b"Parcel\r\n", b"Parcel!\r\n"),
        MAIL.replace(b"Where", b"When"),
        MAIL.replace(b"m1@", b"m2@"),
        MAIL.replace(b"kim@customer.example>\r\nTo", b"kim@customer.example>\r\nCc: x@y.example\r\nTo"),
        MAIL.replace(b"+0100", b"+0200"),
    ):
        assert dedup_key(changed) != dedup_key(MAIL), changed


def test_message_ids_are_compared_as_bytes_and_read_as_the_parser_reads_them() -> None:
    u, o = (MAIL.replace(b"m1@", f"bestellung-{c}@".encode()) for c in "üö")
    assert dedup_key(u) != dedup_key(o)
    assert identify(u)[1] == "bestellung-ü@customer.example"
    latin = MAIL.replace(b"m1@", b"bestellung-\xfc@")  # 8-bit, not UTF-8: read as Latin-1
    assert identify(latin)[1] == "bestellung-ü@customer.example"
    assert dedup_key(latin) != dedup_key(u)
    assert identify(MAIL.replace(b"<m1@customer.example>", b"<a b@c> <d@e>"))[1] == "d@e"
    assert identify(MAIL.replace(b"m1@", b"m\x00@"))[1] is None  # kept in raw, not as text
    assert identify(b"junk without headers")[1] is None


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400), st.integers(min_value=0, max_value=len(MAIL)))
def test_any_bytes_have_a_key_and_storable_id(noise: bytes, at: int) -> None:
    for raw in (noise, MAIL[:at] + noise + MAIL[at:]):
        key, message_id = identify(raw)
        assert key.startswith("mail:") and len(key) <= 255
        if message_id is not None:
            message_id.encode("utf-8")  # never a surrogate
            assert "\0" not in message_id and len(message_id) <= 995


def test_every_fixture_has_its_own_key() -> None:
    files = sorted(DATA.rglob("*.eml"))
    assert len({dedup_key(f.read_bytes()) for f in files}) == len(files)


@given(st.text(st.characters(codec="utf-8", exclude_categories=())) | st.binary().map(
    lambda b: b.decode("utf-8", "surrogateescape")))  # fmt: skip
def test_lossless_text_round_trips_and_is_always_storable(value: str) -> None:
    stored = store.LosslessText.escape(value)
    stored.encode("utf-8")
    assert "\0" not in stored
    assert store.LosslessText.unescape(stored) == value


def test_an_8bit_envelope_round_trips_through_the_database(database_url: str) -> None:
    engine = store.make_engine(database_url)
    store.upgrade(engine)
    envelope = b"k\xe9m\x00@customer.example".decode("utf-8", "surrogateescape")
    with engine.begin() as conn:
        conn.execute(store.messages.insert(), dict(
            dedup_key="k", source="smtp", received_at=datetime.now(UTC), sha256="0" * 64, size=1,
            envelope_from=envelope, envelope_to="support@shop.example"))  # fmt: skip
    with engine.connect() as conn:
        row = conn.execute(sa.select(store.messages)).one()
    assert (row.envelope_from, row.envelope_to) == (envelope, "support@shop.example")
    engine.dispose()


def test_the_migration_gives_stored_mail_the_new_keys(database_url: str) -> None:
    """Rows stored before the upgrade are still recognised afterwards (the mailbox copy of
    a mail the listener got before the upgrade); one whose raw message is gone keeps its key."""
    engine = store.make_engine(database_url)
    store.upgrade(engine, "0005")
    old = {"source": "smtp", "received_at": datetime.now(UTC), "sha256": "0" * 64, "size": 1}
    with engine.begin() as conn:
        conn.execute(store.messages.insert(), [
            dict(old, dedup_key="m1@customer.example", message_id="m1@customer.example", raw=MAIL),
            dict(old, dedup_key="sha256:" + "1" * 64, message_id=None, raw=MAIL.replace(b"Message-ID: <m1@customer.example>\r\n", b"")),
            dict(old, dedup_key="purged@customer.example", message_id="purged@customer.example", raw=None),
        ])  # fmt: skip
    store.upgrade(engine)
    with engine.connect() as conn:
        keys = list(conn.execute(sa.select(store.messages.c.dedup_key, store.messages.c.message_id)
                                 .order_by(store.messages.c.id)))  # fmt: skip
    assert keys[0] == (dedup_key(b"Delivered-To: support@shop.example\r\n" + MAIL), "m1@customer.example")
    assert keys[1].dedup_key.startswith("mail:")
    assert tuple(keys[2]) == ("purged@customer.example", "purged@customer.example")
    engine.dispose()
