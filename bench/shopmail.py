"""A shop's mail for the benchmarks: a realistic corpus and a year of history, from a seed.

`Corpus` writes the mail of a busy shop's support inbox in waves: new conversations,
customers answering our acknowledgments and the team's replies (In-Reply-To and
References naming them, the text they answer quoted), the team's replies themselves (BCC
to the gateway, From our address), follow-ups that only carry our reference tag, a few
attachments. About 30 % are multipart/alternative with quoted-printable HTML, as mail
programs send them; the headers are those of real mail (Received, DKIM-Signature, the
mail program's). The replies can only name what the shop sent, so the gateway's
acknowledgments are fed back (`learn`) from what the sink received before the next wave
is written. Sizes: median about 2.4 KB.

`history()` is a year of such a shop as rows (conversations, their messages, our
acknowledgments, reply cycles, participants, events, unmatched team replies and their
keys), for `store.load_history`.
"""

from __future__ import annotations

import base64
import quopri
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import format_datetime
from typing import Any

SHOP = "support@shop.example"
TEAM_IDS = "mx.shopteam.example"  # the team's mail program's Message-ID domain
DOMAINS = ("gmail.example", "web.example", "gmx.example", "outlook.example", "t-online.example",
           "icloud.example", "yahoo.example", "posteo.example")  # fmt: skip
FIRST = ("Anna", "Ben", "Clara", "David", "Emma", "Felix", "Greta", "Hannah", "Jonas", "Lena",
         "Lukas", "Marie", "Noah", "Paul", "Sophie", "Tom", "Yusuf", "Zoe", "Ömer", "Jürgen")  # fmt: skip
LAST = ("Müller", "Schmidt", "Meyer", "Weber", "Wagner", "Becker", "Schulz", "Hoffmann", "Koch",
        "Richter", "Klein", "Wolf", "Neumann", "Braun", "Zimmermann", "Krüger", "Hartmann")  # fmt: skip
TOPICS = ("my order {n}", "parcel {n} has not arrived", "return of order {n}", "invoice {n}",
          "wrong size delivered", "refund for order {n}", "damaged item in order {n}",
          "change delivery address", "question about product {n}", "voucher code not working",
          "cancel order {n}", "missing part", "Lieferung {n} fehlt", "Rechnung {n}")  # fmt: skip
_TEXT = ("the order I placed last week has still not arrived and the tracking page shows no "
         "update since Tuesday could you please check what happened with the parcel and tell "
         "me when I can expect it I also noticed that the invoice lists a different address "
         "than the one I entered during checkout thank you for your help kind regards we need "
         "it before the weekend because it is a birthday present size colour exchange refund "
         "voucher payment card account password delivery courier neighbour returned damaged "
         "box screen cable manual warranty replacement bitte danke Grüße schön")
WORDS = tuple(_TEXT.split(" "))
MAILERS = ("Mozilla Thunderbird 115.5", "Apple Mail (2.3774)", "Microsoft Outlook 16.0",
           "Roundcube Webmail/1.6.5", "K-9 Mail for Android")  # fmt: skip


def _sentence(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(6, 18))]
    return " ".join(words).capitalize() + rng.choice((".", ".", ".", "?", "!"))


def _paragraphs(rng: random.Random, median: int) -> list[str]:
    """Text of about `median` characters (log-normal), in paragraphs of sentences."""
    target = int(rng.lognormvariate(0, 0.6) * median)
    out: list[str] = []
    size = 0
    while size < target or not out:
        paragraph = " ".join(_sentence(rng) for _ in range(rng.randint(1, 4)))
        out.append(paragraph)
        size += len(paragraph) + 2
    return out


def _wrap(text: str, width: int = 72) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return [*lines, line] if line else lines


def _html(paragraphs: list[str], quoted: list[str]) -> str:
    body = "".join(f"<p style=\"margin:0 0 1em 0\">{p}</p>\n" for p in paragraphs)
    if quoted:
        body += ('<blockquote type="cite" style="border-left:2px solid #ccc;padding-left:8px">'
                 + "<br>\n".join(quoted) + "</blockquote>\n")  # fmt: skip
    return ('<html><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8">'
            '</head><body style="font-family:Arial,sans-serif;font-size:14px">\n'
            f"{body}</body></html>\n")  # fmt: skip


def _qp(text: str) -> str:
    return quopri.encodestring(text.encode("utf-8")).decode("ascii").replace("\n", "\r\n")


@dataclass
class Thread:
    """One conversation as the customer and the team see it."""

    customer: str
    name: str
    subject: str
    ids: list[str] = field(default_factory=list)  # every Message-ID of the thread, oldest first
    ack: str | None = None  # our acknowledgment's Message-ID, once the sink saw it
    ack_subject: str = ""
    team: str | None = None  # the team's latest reply
    last_text: list[str] = field(default_factory=list)  # what a reply would quote


@dataclass(frozen=True)
class Mail:
    envelope_from: str
    raw: bytes
    kind: str  # new / reply-ack / reply-team / team / tag


class Corpus:
    """The shop's mail, wave by wave, from a fixed seed (see the module docstring)."""

    def __init__(self, seed: int = 16) -> None:
        self.rng = random.Random(seed)
        self.threads: list[Thread] = []
        self.by_id: dict[str, Thread] = {}
        self.count = 0

    def learn(self, message_id: str, in_reply_to: str, subject: str) -> None:
        """An acknowledgment the gateway sent (as the sink received it)."""
        thread = self.by_id.get(in_reply_to)
        if thread is not None and thread.ack is None:
            thread.ack, thread.ack_subject = message_id, subject
            thread.ids.append(message_id)
            self.by_id[message_id] = thread

    def wave(self, size: int, now: datetime) -> list[Mail]:
        return [self._next(now) for _ in range(size)]

    # ------------------------------------------------------------------ one message

    def _next(self, now: datetime) -> Mail:
        self.count += 1
        rng = self.rng
        acked = [t for t in self.threads[-400:] if t.ack is not None]
        answered = [t for t in acked if t.team is not None]
        roll = rng.random()
        if roll < 0.25 and acked:
            return self._customer(rng.choice(acked), now, "reply-ack")
        if roll < 0.40 and answered:
            return self._customer(rng.choice(answered), now, "reply-team")
        if roll < 0.55 and acked:
            return self._team(rng.choice(acked), now)
        if roll < 0.60 and acked:
            return self._customer(rng.choice(acked), now, "tag")
        return self._new(now)

    def _new(self, now: datetime) -> Mail:
        rng = self.rng
        name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        local = re.sub(r"[^a-z]", "", name.lower().replace(" ", ".").replace("ü", "ue")
                       .replace("ö", "oe"))  # fmt: skip
        customer = f"{local}.{self.count}@{rng.choice(DOMAINS)}"
        subject = rng.choice(TOPICS).format(n=rng.randint(100000, 999999)).capitalize()
        thread = Thread(customer, name, subject)
        self.threads.append(thread)
        return self._customer(thread, now, "new")

    def _customer(self, thread: Thread, now: datetime, kind: str) -> Mail:
        rng = self.rng
        message_id = f"{rng.getrandbits(64):016x}.{self.count}@{thread.customer.split('@')[1]}"
        if kind == "new":
            subject, answers = thread.subject, None
        elif kind == "tag":
            subject, answers = f"Any news? {thread.ack_subject.split(' ')[-1]}", None
        elif kind == "reply-ack":
            subject, answers = thread.ack_subject, thread.ack
        else:
            subject, answers = f"Re: {thread.subject}", thread.team
        quoted = [] if answers is None else [f"> {line}" for line in thread.last_text[:12]]
        if kind == "reply-ack":
            quoted = ["> Thank you for your message. We have received it and will answer",
                      "> within one business day.", f"> Reference: {subject.split(' ')[-1]}"]  # fmt: skip
        text = _paragraphs(rng, 520)
        headers = self._envelope_headers(thread.customer, now)
        headers += [
            f"From: {thread.name} <{thread.customer}>", f"To: {SHOP}", f"Subject: {subject}",
            f"Date: {format_datetime(now)}", f"Message-ID: <{message_id}>",
        ]  # fmt: skip
        if answers is not None:
            headers += [f"In-Reply-To: <{answers}>",
                        "References: " + " ".join(f"<{i}>" for i in thread.ids[-8:])]  # fmt: skip
        thread.ids.append(message_id)
        self.by_id[message_id] = thread
        thread.last_text = [line for p in text for line in _wrap(p)]
        return Mail(thread.customer, self._body(headers, text, quoted), kind)

    def _team(self, thread: Thread, now: datetime) -> Mail:
        rng = self.rng
        message_id = f"{rng.getrandbits(64):016x}.{self.count}@{TEAM_IDS}"
        text = ["Hello " + thread.name.split(" ")[0] + ",", *_paragraphs(rng, 500),
                "Kind regards,\nYour shop team"]  # fmt: skip
        quoted = [f"> {line}" for line in thread.last_text[:12]]
        headers = [
            *self._envelope_headers(SHOP, now), f"From: Shop Support <{SHOP}>", f"To: {thread.name} <{thread.customer}>",
            f"Subject: Re: {thread.subject}", f"Date: {format_datetime(now)}",
            f"Message-ID: <{message_id}>", f"In-Reply-To: <{thread.ids[-1]}>",
            "References: " + " ".join(f"<{i}>" for i in thread.ids[-8:]),
        ]  # fmt: skip
        thread.ids.append(message_id)
        thread.team = message_id
        self.by_id[message_id] = thread
        thread.last_text = [line for p in text for line in _wrap(p)]
        return Mail(SHOP, self._body(headers, text, quoted, html_share=0.6), "team")

    def _envelope_headers(self, sender: str, now: datetime) -> list[str]:
        rng = self.rng
        domain = sender.split("@")[1]
        stamp = format_datetime(now)
        received = [
            f"Received: from mail{rng.randint(1, 40)}.{domain} (mail{rng.randint(1, 40)}.{domain} "
            f"[192.0.2.{rng.randint(1, 254)}])\r\n\tby mx.shop.example (Postfix) with ESMTPS id "
            f"{rng.getrandbits(40):010X}\r\n\tfor <{SHOP}>; {stamp}"
            for _ in range(rng.randint(1, 3))
        ]
        signature = base64.b64encode(rng.randbytes(rng.choice((128, 256)))).decode()
        dkim = (f"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d={domain}; s=s{rng.randint(1, 9)};\r\n"
                f"\tt={int(now.timestamp())}; h=from:to:subject:date:message-id:mime-version;\r\n"
                f"\tbh={base64.b64encode(rng.randbytes(32)).decode()};\r\n\tb="
                + "\r\n\t".join(signature[i:i + 70] for i in range(0, len(signature), 70)))  # fmt: skip
        return [*received, dkim, f"X-Mailer: {rng.choice(MAILERS)}", "MIME-Version: 1.0"]

    def _body(self, headers: list[str], text: list[str], quoted: list[str], *,
              html_share: float = 0.3) -> bytes:  # fmt: skip
        rng = self.rng
        plain = "\r\n\r\n".join("\r\n".join(_wrap(p)) for p in text)
        if quoted:
            plain += "\r\n\r\n" + "\r\n".join(quoted)
        plain += "\r\n"
        boundary = f"----=_Part_{rng.getrandbits(48):012x}"
        if rng.random() < html_share:
            html = _html(text, [q[2:] for q in quoted])
            part = (f"Content-Type: multipart/alternative; boundary=\"{boundary}\"\r\n\r\n"
                    f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                    f"Content-Transfer-Encoding: quoted-printable\r\n\r\n{_qp(plain)}\r\n"
                    f"--{boundary}\r\nContent-Type: text/html; charset=utf-8\r\n"
                    f"Content-Transfer-Encoding: quoted-printable\r\n\r\n{_qp(html)}\r\n"
                    f"--{boundary}--\r\n")  # fmt: skip
        else:
            part = ("Content-Type: text/plain; charset=utf-8; format=flowed\r\n"
                    f"Content-Transfer-Encoding: 8bit\r\n\r\n{plain}")  # fmt: skip
        if rng.random() < 0.03:  # a photo or a PDF
            mixed = f"----=_Mixed_{rng.getrandbits(48):012x}"
            data = base64.encodebytes(rng.randbytes(rng.randint(10_000, 120_000))).decode()
            inner_headers, _, inner_body = part.partition("\r\n\r\n")
            part = (f"Content-Type: multipart/mixed; boundary=\"{mixed}\"\r\n\r\n"
                    f"--{mixed}\r\n{inner_headers}\r\n\r\n{inner_body}\r\n"
                    f"--{mixed}\r\nContent-Type: application/pdf; name=\"invoice.pdf\"\r\n"
                    "Content-Disposition: attachment; filename=\"invoice.pdf\"\r\n"
                    f"Content-Transfer-Encoding: base64\r\n\r\n{data.replace(chr(10), chr(13) + chr(10))}"
                    f"--{mixed}--\r\n")  # fmt: skip
        return ("\r\n".join(headers) + "\r\n" + part).encode("utf-8")


# ---------------------------------------------------------------------------- history


@dataclass(frozen=True)
class _Where:
    """One history conversation's rows: adds a message (and its event) to them."""

    rows: dict[str, list[dict[str, Any]]]
    next_id: Any
    n: int
    conv: int
    customer: str
    inbox: str

    def message(self, row_id: int, when: datetime, direction: str, raw: bytes, **extra: Any) -> None:
        team = direction == "team"
        conv = extra.get("conv", self.conv)
        self.rows.setdefault("messages", []).append(dict(
            id=row_id, dedup_key=f"h{row_id}",
            message_id=f"h{row_id}@{TEAM_IDS}" if team else f"h{row_id}.{self.n}@{self.customer.split('@')[1]}",
            conversation_id=conv, inbox=self.inbox, direction=direction, source="smtp",
            status="processed", error=None, received_at=when,
            envelope_from=SHOP if team else self.customer, envelope_to=SHOP,
            from_addr=SHOP if team else self.customer, subject=f"Order {self.n}",
            skip_rule=extra.get("rule"), skip_reason=extra.get("reason"),
            acknowledged=extra.get("acked", False), sha256="0" * 64, size=len(raw), raw=raw, match=None,
        ))  # fmt: skip
        self.rows.setdefault("events", []).append(dict(
            id=self.next_id("events"), at=when, kind=extra.get("event", "not-acknowledged"),
            conversation_id=conv, message_row=row_id, detail='{"rule": null, "priority": "normal"}',
        ))  # fmt: skip

YEAR = {"conversations": 100_000, "days": 360}  # a busy shop: about 280 conversations a day


def history(now: datetime, conversations: int = YEAR["conversations"], days: int = YEAR["days"],
            inbox: str = "shop", chunk: int = 20_000) -> Iterator[dict[str, list[dict[str, Any]]]]:  # fmt: skip
    """A shop's past, in chunks of rows for `store.load_history`: per conversation the
    customer's mail, our acknowledgment (sent), the team's reply, often a follow-up and
    the next reply; machine mail (not acknowledged); a few team replies that never found
    their conversation, with their reply keys. Ends a day before `now`. About 2
    messages and 1 outbox row per conversation; bodies of realistic size."""
    rng = random.Random(1)
    start = now - timedelta(days=days + 1)
    span = days * 86400
    customer_raw, team_raw, ack_raw = b"c" * 2400, b"t" * 2200, b"a" * 3100
    ids = {"messages": 0, "outbox": 0, "events": 0, "cycles": 0}

    def next_id(table: str) -> int:
        ids[table] += 1
        return ids[table]

    rows: dict[str, list[dict[str, Any]]] = {}
    for n in range(conversations):
        at = start + timedelta(seconds=span * n / conversations + rng.randint(0, 59))
        customer = f"customer{rng.randint(0, 60_000)}@{rng.choice(DOMAINS)}"
        first = next_id("messages")
        conv = n + 1
        reply_at = at + timedelta(minutes=rng.randint(20, 600))
        rows.setdefault("conversations", []).append(dict(
            id=conv, reference=f"SHOP-{first + 1000}", inbox=inbox, customer=customer,
            subject=f"Order {n}", priority=rng.choice(("normal", "normal", "normal", "high", "urgent")),
            priority_reason="", state="closed", received_at=at, window_seconds=28800, stretch=1.0,
            season=None, due_at=at + timedelta(hours=8), warn_at=at + timedelta(hours=6),
            first_reply_at=reply_at, first_reply_business_seconds=int((reply_at - at).total_seconds()),
            breached=False, next_due_at=None, last_customer_at=at, last_team_at=reply_at,
            warned_at=at, breach_alerted_at=None, closed_at=reply_at + timedelta(days=7),
            created_at=at, customer_notified_at=None, source=None,
        ))  # fmt: skip
        where = _Where(rows, next_id, n, conv, customer, inbox)
        message = where.message
        message(first, at, "customer", customer_raw, acked=True, event="acknowledged")
        rows.setdefault("outbox", []).append(dict(
            id=next_id("outbox"), kind="ack", conversation_id=conv, source_message_id=first,
            sender=SHOP, recipient=customer, message_id=f"ack.h{conv}@shop.example", raw=ack_raw,
            status="sent", attempts=1, next_attempt_at=at, last_error=None, created_at=at, sent_at=at,
        ))  # fmt: skip
        cycles = rows.setdefault("cycles", [])
        cycles.append(dict(
            id=next_id("cycles"), conversation_id=conv, kind="first", priority="normal", started_at=at,
            window_seconds=28800, stretch=1.0, due_at=at + timedelta(hours=8), warn_at=None,
            replied_at=reply_at, business_seconds=int((reply_at - at).total_seconds()), breached=False,
            warned_at=at, breach_alerted_at=None,
        ))  # fmt: skip
        message(next_id("messages"), reply_at, "team", team_raw, event="team-reply")
        rows.setdefault("participants", []).append(dict(conversation_id=conv, address=customer))
        if rng.random() < 0.35:  # the customer wrote again, and the team answered that too
            again = reply_at + timedelta(hours=rng.randint(1, 48))
            message(next_id("messages"), again, "customer", customer_raw)
            cycles.append(dict(
                id=next_id("cycles"), conversation_id=conv, kind="next", priority="normal",
                started_at=again, window_seconds=28800, stretch=1.0, due_at=again + timedelta(hours=8),
                warn_at=None, replied_at=again + timedelta(hours=2), business_seconds=7200,
                breached=False, warned_at=again, breach_alerted_at=None,
            ))  # fmt: skip
            message(next_id("messages"), again + timedelta(hours=2), "team", team_raw, event="team-reply")
        if rng.random() < 0.2:  # machine mail: out of office, bounces, newsletters
            rule = rng.choice(("auto-reply", "bounce", "mailing-list"))
            message(next_id("messages"), at, "machine", customer_raw[:900], conv=None, rule=rule,
                    reason="machine mail")  # fmt: skip
        if rng.random() < 0.02:  # a team reply to mail the gateway never saw
            lost = next_id("messages")
            message(lost, at, "team", team_raw, conv=None, event="team-reply-unmatched")
            rows.setdefault("reply_keys", []).extend([
                dict(message_row=lost, key=f"<lost{n}@{rng.choice(DOMAINS)}"),
                dict(message_row=lost, key=f"@{customer}"),
            ])  # fmt: skip
        if (n + 1) % chunk == 0 or n + 1 == conversations:
            yield rows
            rows = {}

