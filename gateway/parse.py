"""Raw message bytes -> `Parsed`: headers, addresses, dates, thread ids and readable text.

Owns: everything about reading a message as a mail client would, robustly. Malformed MIME,
unknown charsets, 8-bit headers and broken dates never raise; they become defects on the
result and the best reading we can make. Only input with no header at all (not an e-mail
message) raises `InputError`. It also owns finding the sender's own new words (quoted
replies, forwarded originals and signatures cut off). Pure: bytes in, values out.
"""

from __future__ import annotations

import codecs
import re
from datetime import UTC
from email import policy
from email.header import decode_header
from email.message import Message
from email.parser import BytesParser
from email.utils import parsedate_to_datetime
from html.parser import HTMLParser

from .addresses import mailboxes
from .addresses import return_path as read_return_path
from .errors import InputError
from .model import Address, Parsed

_MSGID = re.compile(r"<([^<>\s]+)>")
_WS = re.compile(r"[ \t]*\r?\n[ \t]+")


def parse(raw: bytes) -> Parsed:
    """Read one message. Never raises for malformed mail except when it has no headers."""
    message = BytesParser(policy=policy.compat32).parsebytes(raw)
    if not message.keys():
        raise InputError("not an e-mail message: no header lines found")
    defects = [type(d).__name__ for d in message.defects]
    headers = tuple((name.lower(), _decode_header(value)) for name, value in message.raw_items())

    def first(name: str) -> str | None:
        for key, value in headers:
            if key == name:
                return value
        return None

    def addresses(name: str) -> tuple[Address, ...]:
        # From the raw values: decoding first would let an encoded word become an address.
        return mailboxes(str(v) for k, v in message.raw_items() if k.lower() == name)

    senders = addresses("from")
    if first("from") is None:
        defects.append("MissingFrom")
    elif not senders:
        defects.append("UnparsableFrom")
    date = None
    date_text = first("date")
    if date_text:
        try:
            date = parsedate_to_datetime(date_text)
        except (TypeError, ValueError, IndexError):
            defects.append("UnparsableDate")
        else:
            if date.tzinfo is None:
                date = date.replace(tzinfo=UTC)
            if not 1970 <= date.year <= 2200:
                defects.append("ImplausibleDate")
                date = None
    return_path = None
    rp = next((str(v) for k, v in message.raw_items() if k.lower() == "return-path"), None)
    if rp is not None:
        return_path = read_return_path(rp)
    message_ids = _MSGID.findall(first("message-id") or "")
    content_types: list[str] = []
    plain, html = _bodies(message, content_types, defects)
    html_only = plain is None and html is not None
    if plain is not None:
        text = plain
    elif html is not None:
        text = html_to_text(html)
    else:
        text = ""
    return Parsed(
        message_id=message_ids[0] if message_ids else None,
        in_reply_to=tuple(_MSGID.findall(first("in-reply-to") or "")),
        references=tuple(_MSGID.findall(" ".join(v for k, v in headers if k == "references"))),
        subject=(first("subject") or "").strip(),
        sender=senders[0] if senders else None,
        reply_to=addresses("reply-to"),
        to=addresses("to"),
        cc=addresses("cc"),
        return_path=return_path,
        date=date,
        headers=headers,
        content_types=tuple(content_types),
        text=text,
        new_text=new_text(text),
        html_only=html_only,
        size=len(raw),
        defects=tuple(dict.fromkeys(defects)),
    )


# ---------------------------------------------------------------------------- headers


def _raw_to_text(value: str) -> str:
    """compat32 keeps 8-bit header bytes as surrogates: read them as UTF-8, else Latin-1."""
    try:
        data = value.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        return value
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _decode_header(value: object) -> str:
    text = _WS.sub(" ", _raw_to_text(str(value)))
    if "=?" not in text:
        return text.strip()
    try:
        pieces = decode_header(text)
    except (ValueError, LookupError, AssertionError):
        return text.strip()
    out = []
    for chunk, charset in pieces:
        if isinstance(chunk, str):
            out.append(chunk)
        else:
            out.append(_decode_bytes(chunk, charset or "utf-8", [])[0])
    return "".join(out).strip()


# ---------------------------------------------------------------------------- bodies


def _decode_bytes(data: bytes, charset: str, defects: list[str]) -> tuple[str, bool]:
    """Decode with the declared charset, falling back sensibly; True when it was clean."""
    try:
        codec = codecs.lookup(charset).name
    except LookupError:
        defects.append(f"UnknownCharset:{charset}")
        codec = None
    if codec is not None:
        try:
            return data.decode(codec), True
        except UnicodeDecodeError:
            pass
    try:
        return data.decode("utf-8"), codec is not None and codec in ("ascii", "us-ascii")
    except UnicodeDecodeError:
        pass
    if codec is not None:
        defects.append(f"UndecodableText:{charset}")
        return data.decode(codec, errors="replace"), False
    return data.decode("cp1252", errors="replace"), False


def _bodies(
    message: Message, types: list[str], defects: list[str]
) -> tuple[str | None, str | None]:
    """The first inline text/plain and text/html parts, decoded."""
    plain: str | None = None
    html: str | None = None
    for part in _walk(message):
        ctype = part.get_content_type()
        types.append(ctype)
        defects.extend(type(d).__name__ for d in part.defects)
        if part.is_multipart() or not ctype.startswith("text/"):
            continue
        disposition = (part.get("Content-Disposition") or "").split(";")[0].strip().lower()
        if disposition == "attachment":
            continue
        try:
            payload = part.get_payload(decode=True)
        except Exception:  # a payload the stdlib cannot decode at all
            defects.append("UndecodablePayload")
            continue
        if not isinstance(payload, bytes):
            continue
        charset = part.get_content_charset() or "us-ascii"
        text, _ = _decode_bytes(payload, charset, defects)
        if ctype == "text/plain" and plain is None:
            plain = text
        elif ctype == "text/html" and html is None:
            html = text
    return plain, html


def _walk(message: Message) -> list[Message]:
    """Every part, but not inside attached messages (their text is not the sender's)."""
    parts = [message]
    payload = message.get_payload()
    if message.is_multipart() and isinstance(payload, list):
        for sub in payload:
            if isinstance(sub, Message):
                if sub.get_content_type() == "message/rfc822":
                    parts.append(sub)
                else:
                    parts.extend(_walk(sub))
    return parts


class _TextFromHtml(HTMLParser):
    """HTML -> readable text, leaving out quoted mail, scripts and styles."""

    _SKIP = frozenset({"script", "style", "head", "title", "blockquote"})
    _QUOTE_MARKS = (
        "gmail_quote",
        "moz-cite-prefix",
        "yahoo_quoted",
        "divrplyfwdmsg",
        "appendonsend",
    )
    _BLOCK = frozenset(
        [
            "p",
            "div",
            "br",
            "tr",
            "li",
            "h1",
            "h2",
            "h3",
            "h4",
            "h5",
            "h6",
            "table",
            "hr",
            "ul",
            "ol",
        ]
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.stack: list[tuple[str, bool]] = []
        self.skipping = 0
        self.stopped = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.stopped:
            return
        marks = " ".join((v or "") for k, v in attrs if k in ("class", "id")).lower()
        if any(m in marks for m in self._QUOTE_MARKS[3:]):
            self.stopped = True  # Outlook: everything after its reply header is the old mail
            return
        skip = tag in self._SKIP or any(m in marks for m in self._QUOTE_MARKS[:3])
        if tag in self._BLOCK:
            self.out.append("\n")
        if tag in ("br", "hr", "img", "meta", "link", "input"):
            return  # void elements never close
        self.stack.append((tag, skip))
        if skip:
            self.skipping += 1

    def handle_endtag(self, tag: str) -> None:
        if self.stopped:
            return
        if tag in self._BLOCK:
            self.out.append("\n")
        for index in range(len(self.stack) - 1, -1, -1):
            if self.stack[index][0] == tag:
                for _, skipped in self.stack[index:]:
                    if skipped:
                        self.skipping -= 1
                del self.stack[index:]
                break

    def handle_data(self, data: str) -> None:
        if not self.stopped and self.skipping == 0:
            self.out.append(data)


def html_to_text(html: str) -> str:
    parser = _TextFromHtml()
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # HTMLParser is lenient; this is a last line of defence
        return re.sub(r"<[^>]*>", " ", html)
    text = "".join(parser.out).replace("\xa0", " ")
    lines = [re.sub(r"[ \t]+", " ", line).strip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


# ---------------------------------------------------------------------------- new text

_REPLY_HEADER = re.compile(
    r"^(on\s.+\swrote:|am\s.+\sschrieb\s?.*:|le\s.+\sa\s[ée]crit\s?:|el\s.+\sescribi[óo]\s?:"
    r"|op\s.+\sschreef\s?.*:|.+\swrote:)\s*$",
    re.IGNORECASE,
)
_ORIGINAL = re.compile(
    r"^\s*(-{2,}\s*(original message|ursprüngliche nachricht|message d'origine|mensaje original"
    r"|oorspronkelijk bericht|forwarded message|weitergeleitete nachricht)\s*-{2,}|_{10,})\s*$",
    re.IGNORECASE,
)
_HEADER_BLOCK = re.compile(r"^\s*\**(from|von|de|van)\s*:\**\s+\S", re.IGNORECASE)
_HEADER_NEXT = re.compile(
    r"^\s*\**(sent|gesendet|envoyé|enviado|verzonden|date|datum|to|an)\s*:", re.IGNORECASE
)


def new_text(text: str) -> str:
    """The writer's own new words: stop at a quote header, an original-message marker or a
    signature separator; drop "> " quoted lines."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    kept: list[str] = []
    for index, line in enumerate(lines):
        stripped = line.strip()
        if line.rstrip() == "--" or line == "-- ":
            break
        if _ORIGINAL.match(stripped):
            break
        joined = stripped + " " + (lines[index + 1].strip() if index + 1 < len(lines) else "")
        if _REPLY_HEADER.match(stripped) or (
            stripped.lower().startswith(("on ", "am ", "le ", "el ", "op "))
            and _REPLY_HEADER.match(joined)
            and len(stripped) < 200
        ):
            break
        if (
            _HEADER_BLOCK.match(stripped)
            and index + 1 < len(lines)
            and _HEADER_NEXT.match(lines[index + 1])
        ):
            break
        if stripped.startswith(">"):
            continue
        kept.append(line)
    return "\n".join(kept).strip()
