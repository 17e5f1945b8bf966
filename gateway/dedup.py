"""What makes two deliveries one message: the dedup key and the stored Message-ID.

Owns: the identity of a received message. Two deliveries are one message when they are
byte-identical, or when they are the same mail seen by both intake paths (the SMTP copy
and the mailbox's IMAP copy differ only in what servers add in transit: Received,
Return-Path, Delivered-To, X-Original-To, DKIM/ARC signatures, spam scores ...). Everything
else is a different message, also when it reuses a Message-ID: the key is a hash of the
Message-ID's exact bytes and of the content every path delivers alike — the origin headers
(From, To, Cc, Date, Subject, Message-ID) and the body, with line endings and header
folding normalised. Nothing is decoded on the way, so ids that differ only in 8-bit or
non-ASCII characters stay different. Pure: bytes in, values out, linear in the size.
"""

from __future__ import annotations

import hashlib
import re

KEY_PREFIX = "mail:"  # keys of this scheme; older rows may hold a bare Message-ID or "sha256:"
ORIGIN = (b"from", b"to", b"cc", b"date", b"subject", b"message-id")
MESSAGE_ID_CHARS = 995  # messages.message_id's width
MESSAGE_ID_BYTES = 2000  # and what an index entry may hold (PostgreSQL: 2704 bytes a row)

_FIELD = re.compile(rb"([!-9;-~]+)[ \t]*:")  # a header field's name, then its colon
_MSGID = re.compile(rb"<([^<>\s]+)>")
_SPACE = re.compile(rb"[ \t\r\n]+")


def split(raw: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """(lower-case name, unfolded value) of each header field, in order, and the body.

    The header ends at the first empty line, or at the first line that is neither a
    field nor a continuation (that line starts the body); an mbox "From " line at the
    very top is skipped."""
    fields: list[tuple[bytes, list[bytes]]] = []  # a value's lines, joined at the end
    at = 0
    body = b""
    if raw.startswith(b"From "):
        at = _line_end(raw, 0)
    while at < len(raw):
        end = _line_end(raw, at)
        line = raw[at:end].rstrip(b"\r\n")
        if not line:
            body = raw[end:]
            break
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1][1].append(line)
        else:
            found = _FIELD.match(line)
            if found is None:
                body = raw[at:]
                break
            fields.append((found.group(1).lower(), [line[found.end() :]]))
        at = end
    return [(name, b" ".join(lines)) for name, lines in fields], body


def _line_end(raw: bytes, at: int) -> int:
    end = raw.find(b"\n", at)
    return len(raw) if end < 0 else end + 1


def message_id_bytes(fields: list[tuple[bytes, bytes]]) -> bytes | None:
    """The first <...> of the first Message-ID field, exactly as sent."""
    for name, value in fields:
        if name == b"message-id":
            found = _MSGID.search(value)
            return found.group(1) if found else None
    return None


def identify(raw: bytes) -> tuple[str, str | None]:
    """(dedup key, Message-ID as text) of a raw message: see `dedup_key`, `message_id`."""
    fields, body = split(raw)
    return _key(fields, body), _text(message_id_bytes(fields))


def dedup_key(raw: bytes) -> str:
    """The key under which a message is stored once (see the module docstring)."""
    return _key(*split(raw))


def _key(fields: list[tuple[bytes, bytes]], body: bytes) -> str:
    digest = hashlib.sha256()

    def add(piece: bytes) -> None:  # length first: no two sequences hash alike
        digest.update(len(piece).to_bytes(8, "big") + piece)

    msgid = message_id_bytes(fields)
    add(b"" if msgid is None else b"<" + msgid + b">")
    for wanted in ORIGIN:
        for name, value in fields:
            if name == wanted:
                add(name + b":" + _SPACE.sub(b" ", value).strip())
    add(body.replace(b"\r\n", b"\n").rstrip(b" \t\r\n"))
    return KEY_PREFIX + digest.hexdigest()


def message_id(raw: bytes) -> str | None:
    """The Message-ID as text, for threading: read as UTF-8 (RFC 6532), else Latin-1, as
    the parser reads headers. None when there is none, or when it could not be stored or
    matched sensibly (control characters, too long)."""
    return _text(message_id_bytes(split(raw)[0]))


def _text(found: bytes | None) -> str | None:
    if found is None:
        return None
    try:
        text = found.decode("utf-8")
    except UnicodeDecodeError:
        text = found.decode("latin-1")
    if len(text) > MESSAGE_ID_CHARS or len(text.encode("utf-8")) > MESSAGE_ID_BYTES:
        return None
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        return None
    return text
