"""Raw message bytes -> `Parsed`: headers, addresses, dates, thread ids and readable text.

Owns: everything about reading a message as a mail client would, robustly. Malformed MIME,
unknown or codec-only charsets, 8-bit headers, broken encoded words, impossible dates, deep
nesting and a damaged first header line never raise; they become defects on the result and
the best reading we can make. Only input with no header-like line at all (empty input,
binary junk: not an e-mail message) raises `InputError`. It also owns finding the sender's
own new words (quoted replies, forwarded originals and signatures cut off). Pure: bytes in,
values out.

Every step is linear in the message size, and what is examined is capped:
- the MIME structure (part headers and bodies) is read from the first `MAX_READ` bytes
  (1 MiB); `Parsed.size` stays the full size, and a longer message gets `ReadFirst1MiB`;
- nesting deeper than `MAX_DEPTH` levels and more than `MAX_PARTS` parts are not followed
  (`NestingTooDeep`, `TooManyParts`);
- HTML is converted from its first `MAX_HTML` characters (256 Ki), and `Parsed.text` keeps
  the first `MAX_TEXT` characters (64 Ki) of the readable body (`TextTruncated`), so
  classification and quote stripping never look further; `Parsed.subject` keeps the first
  `MAX_SUBJECT` characters (`SubjectTruncated`; the full value stays in `headers`);
- a line counts as a reply header ("On … wrote:") only when it is at most
  `MAX_ATTRIBUTION` characters long.
Header blocks are read by the stdlib (compat32), one block at a time; the body structure,
RFC 2047 encoded words and HTML are read here, because the stdlib's MIME parser (one
recursion level and one boundary test per line per nesting level), `decode_header` and
`HTMLParser` are quadratic or recurse without bound on some hostile inputs.
"""

from __future__ import annotations

import binascii
import codecs
import html as htmllib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC
from email import policy
from email.message import Message
from email.parser import BytesParser
from email.utils import parsedate_to_datetime
from typing import TypeVar
from urllib.parse import unquote_to_bytes

from .addresses import mailboxes
from .addresses import return_path as read_return_path
from .errors import InputError
from .model import Address, Parsed

MAX_READ = 1 << 20  # bytes of the message whose structure and bodies are read
MAX_DEPTH = 20  # nested multiparts followed
MAX_PARTS = 500  # MIME parts listed
MAX_PART_HEADER = 64 << 10  # bytes of one body part's header block
MAX_HTML = 256 << 10  # characters of HTML turned into text
MAX_TEXT = 64 << 10  # characters of readable text kept and examined
MAX_ATTRIBUTION = 400  # longest line taken for an "On ... wrote:" reply header
MAX_SUBJECT = 1000  # characters of the subject kept
_MAX_DATE = 256  # characters of a Date header read
_MAX_PARAMS = 8 << 10  # characters of a Content-Type header searched for parameters
_MAX_DEFECTS = 50

_MSGID = re.compile(r"<([^<>\s]+)>")
# Folded header lines: the optional run of blanks before the line break is only tried where
# the run starts, so a long run of spaces costs one pass, not one pass per space.
_WS = re.compile(r"(?:(?<![ \t])[ \t]+)?\r?\n[ \t]+")
_BLANK_LINE = re.compile(rb"(?:\r\n|\n|\r(?!\n))(?:\r\n|\n|\r(?!\n))")
_LINE_BREAK = re.compile(rb"\r\n|\n|\r")
_DELIMITER = re.compile(rb"(?<![^\r\n])--([^\r\n]*)")  # a line starting with "--"
_HEADER_LINE = re.compile(
    rb"(?i)(from|to|cc|subject|date|message-id|received|return-path|reply-to|sender"
    rb"|delivered-to|mime-version|content-type|in-reply-to|references):"
)
_PARAM = re.compile(r';\s*([^\s=;"]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"?|([^;\s]*))')
_SECTION = re.compile(r"(?:\*(\d{1,3}))?(\*)?")  # RFC 2231: name*0, name*1*, name*

T = TypeVar("T")


def parse(raw: bytes) -> Parsed:
    """Read one message. Never raises for deliverable mail; `InputError` only for input
    with no header lines at all."""
    defects: list[str] = []
    try:
        message, body = _read_head(raw, defects)
        return _read(raw, message, body, defects)
    except InputError:
        raise
    except Exception as exc:  # a last line of defence: keep the message, say what failed
        defects.append(f"ParseFailed:{type(exc).__name__}")
        return _unread(raw, defects)


def _read(raw: bytes, message: Message, body: bytes, defects: list[str]) -> Parsed:
    defects.extend(type(d).__name__ for d in message.defects)
    headers = tuple(
        (name.lower(), _decode_header(value, defects)) for name, value in message.raw_items()
    )

    def first(name: str) -> str | None:
        for key, value in headers:
            if key == name:
                return value
        return None

    def addresses(name: str) -> tuple[Address, ...]:
        # From the raw values: decoding first would let an encoded word become an address.
        return mailboxes(str(v) for k, v in message.raw_items() if k.lower() == name)

    none: tuple[Address, ...] = ()
    senders = _bounded(lambda: addresses("from"), none, defects, "From")
    if first("from") is None:
        defects.append("MissingFrom")
    elif not senders:
        defects.append("UnparsableFrom")
    date = None
    date_text = first("date")
    if date_text:
        try:
            date = parsedate_to_datetime(date_text[:_MAX_DATE])
        except (TypeError, ValueError, IndexError):
            defects.append("UnparsableDate")
        except OverflowError:  # a year such as 99999999999
            defects.append("ImplausibleDate")
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
    subject = (first("subject") or "").strip()
    if len(subject) > MAX_SUBJECT:
        defects.append("SubjectTruncated")
        subject = subject[:MAX_SUBJECT].rstrip()
    try:
        content_types, plain, html = _bodies(message, body, defects)
    except Exception as exc:  # a last line of defence: the headers still count
        defects.append(f"UnreadableBody:{type(exc).__name__}")
        content_types, plain, html = [], None, None
    html_only = plain is None and html is not None
    if plain is not None:
        text = plain
    elif html is not None:
        text = html_to_text(html)
    else:
        text = ""
    if len(text) > MAX_TEXT:
        defects.append("TextTruncated")
        text = text[:MAX_TEXT]
    # Where the receiving servers say they delivered it (plus-addresses included).
    delivered_to = _bounded(lambda: addresses("delivered-to") + addresses("x-original-to"), none,
                            defects, "Delivered-To")  # fmt: skip
    return Parsed(
        message_id=message_ids[0] if message_ids else None,
        in_reply_to=tuple(_MSGID.findall(first("in-reply-to") or "")),
        references=tuple(_MSGID.findall(" ".join(v for k, v in headers if k == "references"))),
        subject=subject,
        sender=senders[0] if senders else None,
        reply_to=_bounded(lambda: addresses("reply-to"), none, defects, "Reply-To"),
        to=_bounded(lambda: addresses("to"), none, defects, "To"),
        cc=_bounded(lambda: addresses("cc"), none, defects, "Cc"),
        return_path=return_path,
        date=date,
        headers=headers,
        content_types=tuple(content_types),
        text=text,
        new_text=new_text(text),
        html_only=html_only,
        size=len(raw),
        defects=tuple(dict.fromkeys(defects))[:_MAX_DEFECTS],
        delivered_to=delivered_to,
        bcc=_bounded(lambda: addresses("bcc"), none, defects, "Bcc"),
    )


def _unread(raw: bytes, defects: list[str]) -> Parsed:
    """The reading when `_read` failed: nothing understood, but the message is kept."""
    return Parsed(
        message_id=None, in_reply_to=(), references=(), subject="", sender=None, reply_to=(),
        to=(), cc=(), return_path=None, date=None, headers=(), content_types=(), text="",
        new_text="", html_only=False, size=len(raw),
        defects=tuple(dict.fromkeys(defects))[:_MAX_DEFECTS],
    )  # fmt: skip


def _bounded(read: Callable[[], T], default: T, defects: list[str], what: str) -> T:
    """`read()`, or `default` when a stdlib reader recurses too deep on hostile nesting
    (hundreds of nested comments in an address header)."""
    try:
        return read()
    except RecursionError:
        defects.append(f"NestingTooDeep:{what}")
        return default


def _safe(text: str) -> str:
    """Sender-controlled text for a defect name: printable ASCII, short."""
    return ascii(text[:40])[1:-1]


# ---------------------------------------------------------------------------- header blocks


def _read_head(raw: bytes, defects: list[str]) -> tuple[Message, bytes]:
    """The top-level header block, parsed, and the bytes of the body that follows it."""
    data = raw[:MAX_READ]
    if len(raw) > MAX_READ:
        defects.append(f"ReadFirst{MAX_READ >> 20}MiB")
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
        defects.append("ByteOrderMark")
    message, body = _split_head(data)
    if message.keys():
        return message, body
    # A damaged first line (junk bytes, a broken mbox separator, a blank line) hides the
    # headers after it; look for a well-known header line among the first few lines.
    for found in _LINE_BREAK.finditer(data, 0, 8 << 10):
        if _HEADER_LINE.match(data, found.end()):
            message, body = _split_head(data[found.end() :])
            if message.keys():
                defects.append("DamagedFirstHeaderLine")
                return message, body
            break
    raise InputError("not an e-mail message: no header lines found")


def _split_head(data: bytes) -> tuple[Message, bytes]:
    """Parse the header block at the start of `data` (up to its first blank line); the rest
    is the body, including lines the stdlib found not to be header lines."""
    blank = _BLANK_LINE.search(data)
    end = blank.end() if blank else len(data)
    head = BytesParser(policy=policy.compat32).parsebytes(data[:end], headersonly=True)
    # Not get_payload(): it decodes 8-bit text with the declared charset, which may fail.
    leftover = getattr(head, "_payload", None)
    rest = leftover.encode("ascii", "surrogateescape") if isinstance(leftover, str) else b""
    head.set_payload("")
    return head, rest + data[end:]


def _raw_header(head: Message, name: str) -> str | None:
    """A header's value as the stdlib stored it (8-bit bytes as surrogates), never raising."""
    for key, value in head.raw_items():
        if key.lower() == name:
            return str(value)
    return None


def _param(value: str | None, name: str) -> str | None:
    """One parameter of a Content-Type-like header, plain or in RFC 2231 form (continued
    and/or percent-encoded), read in one pass: the stdlib's parameter parser is quadratic
    in the header's length."""
    if not value:
        return None
    pieces: dict[int, tuple[bool, str]] = {}  # section -> (percent-encoded, text)
    for match in _PARAM.finditer(value[:_MAX_PARAMS]):
        key, quoted = match.group(1).lower(), match.group(2)
        text = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else match.group(3)
        if key == name:
            return text
        section = _SECTION.fullmatch(key[len(name) :]) if key.startswith(name) else None
        if section is not None:
            pieces.setdefault(int(section.group(1) or 0), (bool(section.group(2)), text))
    if not pieces:
        return None
    data = b""
    for number in range(len(pieces)):
        if number not in pieces:
            break
        encoded, text = pieces[number]
        if encoded and number == 0:
            text = text.split("'", 2)[-1]  # charset'language'value
        raw = text.encode("utf-8", "surrogateescape")
        data += unquote_to_bytes(raw) if encoded else raw
    return data.decode("utf-8", "surrogateescape")


def _content_type(head: Message, default: str) -> str:
    value = _raw_header(head, "content-type")
    if value is None:
        return default
    ctype = value.split(";", 1)[0].strip().lower()
    return ctype if ctype.count("/") == 1 else "text/plain"


# ---------------------------------------------------------------------------- header values


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


# RFC 2047: =?charset[*language]?B|Q?text?= . No part may contain "?", so every attempt
# ends at one of the next three question marks: one pass over the header.
_ENCODED_WORD = re.compile(r"=\?([^?\s]{1,75})\?([bBqQ])\?([^?]*)\?=")


def _decode_header(value: object, defects: list[str] | None = None) -> str:
    """A header value as text: folding removed, encoded words decoded (unknown charsets and
    undecodable words recorded in `defects`, never raised)."""
    text = _WS.sub(" ", _raw_to_text(str(value)))
    if "=?" not in text:
        return text.strip()
    sink: list[str] = [] if defects is None else defects
    out: list[str] = []
    pending: tuple[str, bytes] | None = None  # adjacent words in one charset join first
    pos = 0

    def flush() -> None:
        nonlocal pending
        if pending is not None:
            out.append(_decode_bytes(pending[1], pending[0], sink)[0])
            pending = None

    for word in _ENCODED_WORD.finditer(text):
        gap = text[pos : word.start()]
        if pending is None or gap.strip(" \t"):  # blanks between two encoded words vanish
            flush()
            out.append(gap)
        pos = word.end()
        data = _word_bytes(word.group(2), word.group(3))
        if data is None:
            sink.append("UndecodableEncodedWord")
            flush()
            out.append(word.group(0))
            continue
        charset = word.group(1).split("*", 1)[0].lower()
        if pending is not None and pending[0] == charset:
            pending = (charset, pending[1] + data)
        else:
            flush()
            pending = (charset, data)
    flush()
    out.append(text[pos:])
    return "".join(out).strip()


def _word_bytes(encoding: str, encoded: str) -> bytes | None:
    data = encoded.encode("utf-8", "surrogateescape")
    if encoding in "qQ":
        return binascii.a2b_qp(data, header=True)
    data += b"=" * (-len(data) % 4)
    try:
        return binascii.a2b_base64(data)
    except binascii.Error:
        return None


# ---------------------------------------------------------------------------- charsets

# Text codecs that are no charset a mail can be written in.
_NOT_CHARSETS = frozenset({"idna", "undefined", "punycode", "unicode-escape", "raw-unicode-escape"})


def _text_codec(charset: str) -> str | None:
    """Python's codec for a MIME charset name; None when unknown, when it is no text
    encoding at all (hex, base64, rot13, zlib, uu, quopri ...) or no mail charset."""
    name = charset.strip()
    if not name or len(name) > 64 or not name.isascii() or not name.isprintable():
        return None
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name in _NOT_CHARSETS:
        return None
    return info.name


def _decode_bytes(data: bytes, charset: str, defects: list[str]) -> tuple[str, bool]:
    """Decode with the declared charset, falling back sensibly; True when it was clean."""
    codec = _text_codec(charset)
    if codec is None:
        defects.append(f"UnknownCharset:{_safe(charset)}")
    else:
        try:
            return data.decode(codec), True
        except ValueError:  # UnicodeDecodeError, and codecs that refuse some input
            pass
    try:
        return data.decode("utf-8"), codec is not None and codec == "ascii"
    except UnicodeDecodeError:
        pass
    if codec is not None:
        defects.append(f"UndecodableText:{_safe(charset)}")
        try:
            return data.decode(codec, errors="replace"), False
        except ValueError:
            pass
    return data.decode("cp1252", errors="replace"), False


# ---------------------------------------------------------------------------- bodies


@dataclass
class _Part:
    head: Message
    ctype: str
    start: int = 0  # the body's bytes, as offsets into the message body
    end: int = 0


@dataclass
class _Multipart:
    boundary: bytes
    ctype: str
    shadowed: int | None  # the outer frame using the same boundary, if any
    parts: int = 0  # delimiters seen


@dataclass
class _Structure:
    """The parts of one message body, read in one pass over its lines starting with "--"
    (no recursion: a stack of the open multiparts and a dict of their boundaries)."""

    body: bytes
    defects: list[str]
    parts: list[_Part] = field(default_factory=list)
    frames: list[_Multipart] = field(default_factory=list)
    index: dict[bytes, int] = field(default_factory=dict)  # boundary -> innermost frame
    leaf: _Part | None = None  # the part whose body runs until the next delimiter

    def enter(self, part: _Part, start: int) -> None:
        """A part whose body starts at `start`: a multipart opens a frame, else a leaf."""
        self.parts.append(part)
        if part.ctype.startswith("multipart/"):
            boundary = _param(_raw_header(part.head, "content-type"), "boundary")
            if not boundary or not boundary.strip():
                self.defects.append("NoBoundaryInMultipartDefect")
            elif len(self.frames) >= MAX_DEPTH:
                self.defects.append("NestingTooDeep")
            else:
                key = boundary.rstrip().encode("utf-8", "surrogateescape")
                self.frames.append(_Multipart(key, part.ctype, self.index.get(key)))
                self.index[key] = len(self.frames) - 1
                return
        part.start = part.end = start
        self.leaf = part

    def close_leaf(self, at: int) -> None:
        if self.leaf is not None:
            self.leaf.end = max(self.leaf.start, at)
            self.leaf = None

    def pop_to(self, depth: int) -> None:
        """Close every frame deeper than `depth` (frames left open by their sender)."""
        while len(self.frames) > depth:
            frame = self.frames.pop()
            self.defects.append(
                "StartBoundaryNotFoundDefect" if frame.parts == 0 else "CloseBoundaryNotFoundDefect"
            )
            self._forget(frame)

    def _forget(self, frame: _Multipart) -> None:
        if frame.shadowed is None:
            del self.index[frame.boundary]
        else:
            self.index[frame.boundary] = frame.shadowed

    def hit(self, line: bytes) -> tuple[int, bool] | None:
        """Which open multipart a "--..." line delimits (innermost first), and whether it
        is the closing delimiter."""
        line = line.rstrip(b" \t")
        best: tuple[int, bool] | None = None
        depth = self.index.get(line)
        if depth is not None:
            best = (depth, False)
        if line.endswith(b"--"):
            depth = self.index.get(line[:-2])
            if depth is not None and (best is None or depth > best[0]):
                best = (depth, True)
        return best

    def read(self, top: Message) -> None:
        self.enter(_Part(top, _content_type(top, "text/plain")), 0)
        body, pos = self.body, 0
        while self.frames:
            found = _DELIMITER.search(body, pos)
            if found is None:
                break
            pos = found.end()
            hit = self.hit(found.group(1))
            if hit is None:
                continue
            depth, closing = hit
            self.close_leaf(_line_start(body, found.start()))
            self.pop_to(depth + 1)
            frame = self.frames[depth]
            if closing:
                self.frames.pop()
                self._forget(frame)
                continue
            frame.parts += 1
            if len(self.parts) >= MAX_PARTS:
                self.defects.append("TooManyParts")
                break
            pos = self._part(frame, pos)
        self.close_leaf(len(body))
        self.pop_to(0)

    def _part(self, frame: _Multipart, pos: int) -> int:
        """Read the part after the delimiter line ending at `pos`; returns where to search
        for the next delimiter."""
        body = self.body
        eol = _LINE_BREAK.match(body, pos)
        start = eol.end() if eol else len(body)  # the part's first line
        empty = _LINE_BREAK.match(body, start)
        if empty is not None:  # no header lines
            head_end, body_start = start, empty.end()
        else:
            limit = start + MAX_PART_HEADER
            blank = _BLANK_LINE.search(body, start, limit)
            head_end = body_start = blank.end() if blank else min(len(body), limit)
            # A delimiter among the header lines ends the part there, without a body.
            search = start
            while (inner := _DELIMITER.search(body, search, head_end)) is not None:
                if self.hit(inner.group(1)) is not None:
                    head_end = body_start = _line_start(body, inner.start())
                    break
                search = inner.end()
        head = BytesParser(policy=policy.compat32).parsebytes(
            body[start:head_end], headersonly=True
        )
        leftover = getattr(head, "_payload", None)
        if isinstance(leftover, str) and leftover:
            # Lines after a line that is no header line: the stdlib left them as the body.
            body_start = head_end - len(leftover.encode("ascii", "surrogateescape"))
        head.set_payload("")
        self.defects.extend(type(d).__name__ for d in head.defects)
        default = "message/rfc822" if frame.ctype == "multipart/digest" else "text/plain"
        self.enter(_Part(head, _content_type(head, default)), body_start)
        return body_start


def _line_start(body: bytes, at: int) -> int:
    """Where the line break before position `at` begins (it belongs to the delimiter)."""
    if at >= 2 and body[at - 2 : at] == b"\r\n":
        return at - 2
    return at - 1 if at >= 1 else 0


def _bodies(
    message: Message, body: bytes, defects: list[str]
) -> tuple[list[str], str | None, str | None]:
    """Every part's type (outermost first, not inside attached messages) and the first
    inline text/plain and text/html parts, decoded."""
    structure = _Structure(body, defects)
    structure.read(message)
    plain: str | None = None
    html: str | None = None
    for part in structure.parts:
        if plain is not None and html is not None:
            break
        if part.ctype not in ("text/plain", "text/html"):
            continue
        if part.ctype == "text/plain" and plain is not None:
            continue
        if part.ctype == "text/html" and html is not None:
            continue
        disposition = _raw_header(part.head, "content-disposition") or ""
        if disposition.split(";")[0].strip().lower() == "attachment":
            continue
        payload = _transfer_decode(
            body[part.start : part.end],
            _raw_header(part.head, "content-transfer-encoding"),
            defects,
        )
        charset = _param(_raw_header(part.head, "content-type"), "charset") or "us-ascii"
        text, _ = _decode_bytes(payload, charset, defects)
        if part.ctype == "text/plain":
            plain = text
        else:
            html = text[:MAX_HTML]
    return [part.ctype for part in structure.parts], plain, html


def _transfer_decode(data: bytes, encoding: str | None, defects: list[str]) -> bytes:
    name = (encoding or "").strip().lower()
    if name == "quoted-printable":
        return binascii.a2b_qp(data)
    if name != "base64":
        return data
    try:
        return binascii.a2b_base64(data)
    except binascii.Error:
        defects.append("InvalidBase64")
    clean = re.sub(rb"[^A-Za-z0-9+/]", b"", data)
    return binascii.a2b_base64(clean[: len(clean) - len(clean) % 4])


# ---------------------------------------------------------------------------- HTML

_TAG_OPEN = re.compile(r"<(/?)([A-Za-z][^\s/>]*)")
_TAG_STOP = re.compile(r""">|=\s*(["'])""")  # the end of a tag, or a quoted value in it
_MARK_ATTR = re.compile(
    r"""(?<![^\s/"'])(?:class|id)\s*=\s*(?:"([^"]*)"?|'([^']*)'?|([^\s"'>]+))""", re.IGNORECASE
)
_RAW_TEXT_END = {"script": re.compile(r"</script", re.I), "style": re.compile(r"</style", re.I)}
_SPACES = re.compile(r"[ \t]+")
_BLANKS = re.compile(r"\n{3,}")


class _TextFromHtml:
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
    _VOID = frozenset({"br", "hr", "img", "meta", "link", "input"})

    def __init__(self) -> None:
        self.out: list[str] = []
        self.stack: list[tuple[str, bool]] = []
        self.open: dict[str, int] = {}  # tag -> how many are on the stack
        self.skipping = 0
        self.stopped = False

    def start(self, tag: str, marks: str) -> None:
        if any(m in marks for m in self._QUOTE_MARKS[3:]):
            self.stopped = True  # Outlook: everything after its reply header is the old mail
            return
        skip = tag in self._SKIP or any(m in marks for m in self._QUOTE_MARKS[:3])
        if tag in self._BLOCK:
            self.out.append("\n")
        if tag in self._VOID:
            return  # void elements never close
        self.stack.append((tag, skip))
        self.open[tag] = self.open.get(tag, 0) + 1
        if skip:
            self.skipping += 1

    def end(self, tag: str) -> None:
        if tag in self._BLOCK:
            self.out.append("\n")
        if not self.open.get(tag):
            return  # a stray end tag closes nothing (and costs no search)
        while True:  # every tag popped here was pushed once: linear overall
            name, skipped = self.stack.pop()
            self.open[name] -= 1
            if skipped:
                self.skipping -= 1
            if name == tag:
                return

    def data(self, text: str) -> None:
        if self.skipping == 0 and text:
            self.out.append(htmllib.unescape(text))


def _tag_end(html: str, pos: int) -> int:
    """Just past the ">" closing the tag whose attributes start at `pos` (">" inside quoted
    values does not count), or -1 when the tag never closes."""
    while True:
        stop = _TAG_STOP.search(html, pos)
        if stop is None:
            return -1
        quote = stop.group(1)
        if quote is None:
            return stop.end()
        close = html.find(quote, stop.end())
        if close < 0:
            return -1
        pos = close + 1


def _marks(attributes: str) -> str:
    """The class and id values of a tag, lower-cased."""
    if "=" not in attributes:
        return ""
    values = (m.group(1) or m.group(2) or m.group(3) or "" for m in _MARK_ATTR.finditer(attributes))
    return htmllib.unescape(" ".join(values)).lower()


def _scan(html: str, sink: _TextFromHtml) -> None:
    """Feed tags and text to `sink`, in one pass: every search starts where the last ended,
    and a comment, tag or script that never closes ends the document."""
    pos, size = 0, len(html)
    while pos < size and not sink.stopped:
        lt = html.find("<", pos)
        if lt < 0:
            sink.data(html[pos:])
            return
        sink.data(html[pos:lt])
        if html.startswith("<!--", lt):
            close = html.find("-->", lt + 4)
            if close < 0:
                return
            pos = close + 3
            continue
        tag = _TAG_OPEN.match(html, lt)
        if tag is None:
            if html.startswith(("<!", "</", "<?"), lt):  # declarations, bogus comments
                close = html.find(">", lt + 2)
                if close < 0:
                    return
                pos = close + 1
            else:
                sink.data("<")
                pos = lt + 1
            continue
        end = _tag_end(html, tag.end())
        if end < 0:
            return
        name = tag.group(2).lower()
        pos = end
        if tag.group(1):
            sink.end(name)
            continue
        attributes = html[tag.end() : end - 1]
        sink.start(name, _marks(attributes))
        if attributes.endswith("/"):
            sink.end(name)
        elif name in _RAW_TEXT_END:  # script and style hold no markup
            close_tag = _RAW_TEXT_END[name].search(html, end)
            if close_tag is None:
                return
            pos = close_tag.start()


def html_to_text(html: str) -> str:
    """Readable text of (the first `MAX_HTML` characters of) an HTML body."""
    sink = _TextFromHtml()
    _scan(html[:MAX_HTML], sink)
    text = "".join(sink.out).replace("\xa0", " ")
    lines = [_SPACES.sub(" ", line).strip() for line in text.splitlines()]
    return _BLANKS.sub("\n\n", "\n".join(lines)).strip()


# ---------------------------------------------------------------------------- new text

# Only tried on lines of at most MAX_ATTRIBUTION characters: two of the alternatives
# backtrack in proportion to the square of the line's length.
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


def _reply_header(line: str, following: str) -> bool:
    """An "On <date>, <name> wrote:" line (in five languages), alone or wrapped over two."""
    if len(line) > MAX_ATTRIBUTION:
        return False
    if _REPLY_HEADER.match(line):
        return True
    if len(line) >= 200 or not line.lower().startswith(("on ", "am ", "le ", "el ", "op ")):
        return False
    following = following.strip()
    return len(following) <= MAX_ATTRIBUTION and bool(_REPLY_HEADER.match(line + " " + following))


def new_text(text: str) -> str:
    """The writer's own new words (of the first `MAX_TEXT` characters): stop at a quote
    header, an original-message marker or a signature separator; drop "> " quoted lines."""
    lines = text[:MAX_TEXT].replace("\r\n", "\n").replace("\r", "\n").split("\n")
    kept: list[str] = []
    for index, line in enumerate(lines):
        stripped = line.strip()
        following = lines[index + 1] if index + 1 < len(lines) else ""
        if line.rstrip() == "--" or line == "-- ":
            break
        if _ORIGINAL.match(stripped):
            break
        if _reply_header(stripped, following):
            break
        if _HEADER_BLOCK.match(stripped) and _HEADER_NEXT.match(following):
            break
        if stripped.startswith(">"):
            continue
        kept.append(line)
    return "\n".join(kept).strip()
