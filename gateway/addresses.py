"""Raw header values -> mailboxes: who a message is from, to, and where it may be answered.

Owns: reading mailboxes (From, Reply-To, To, Cc) and the Return-Path from the header value
exactly as it arrived, and decoding display names afterwards. The order is the whole point:
an RFC 2047 encoded word is one opaque token of the raw header, so whatever it decodes to
(`Eve\\r\\nBcc: victim@…`, `"x" <victim@…>`, our own address) can only ever become
display-name text, never an address, a group or a second mailbox. An encoded word found
inside an address makes that mailbox unreadable rather than guessed at.

Invariants: the grammar is RFC 5322's address list read leniently (groups, obs-route,
comments, quoted strings, domain literals) and RFC 6532's UTF-8 addresses; every address
returned contains one "@", no control character, line or paragraph separator, and no
whitespace outside a quoted local part; every display name is one line — control
characters, CR, LF, U+2028 and U+2029 become spaces. It never raises, never recurses and
runs in time linear in the header's length. Pure: strings in, `Address` values out.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from collections.abc import Iterable
from typing import NamedTuple

from .model import Address

# An encoded word: =?charset[*language]?B|Q?text?=, no whitespace and no "?" inside a part.
_EWORD = re.compile(r"=\?([^?\s*]+)(?:\*[^?\s]*)?\?([bBqQ])\?([^?\s]*)\?=")
# Atom text: anything but whitespace, RFC 5322 specials and the "=" that may open an
# encoded word ("=" not followed by "?" is ordinary atom text). UTF-8 is atom text (RFC 6532).
_ATOM = re.compile(r'(?:[^\s()<>@,:;.\\"\[\]=]|=(?!\?)|\\.?)+')
_SPECIALS = frozenset("<>@,:;.")
_FOLD = re.compile(r"\r?\n(?=[ \t])|\r(?=[ \t])")
_ATEXT = re.compile(r'[^\s\x00-\x1f\x7f()<>@,:;.\\"\[\]]+')  # RFC 5322 atext, UTF-8 too
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)
_Q_HEX = re.compile(rb"=([0-9A-Fa-f]{2})")
_SPACES = re.compile(r"\s+")
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


class _Token(NamedTuple):
    kind: str  # "atom", "quoted", "eword", "comment", "literal", or the special character
    text: str  # atom text, quoted/comment content (quoted pairs kept), the whole encoded word
    space: bool  # whitespace (or a comment) came before it


# ---------------------------------------------------------------------------- public


def mailboxes(values: Iterable[str]) -> tuple[Address, ...]:
    """Every readable mailbox in these raw values of one header field (From, To, ...), in
    order; group names are dropped, their members kept; unreadable items are skipped."""
    found: list[Address] = []
    for value in values:
        for item in _items(_tokens(_text(value))):
            address = _mailbox(item)
            if address is not None:
                found.append(address)
    return tuple(found)


def return_path(value: str) -> str | None:
    """The address of a raw Return-Path value: "" for the null path `<>` (or an empty
    value), None when no address can be read from it (an encoded word never yields one)."""
    kinds = [t.kind for t in _tokens(_text(value)) if t.kind != "comment"]
    if kinds in ([], ["<", ">"]):
        return ""
    found = mailboxes([value])
    return found[0].addr if found else None


def clean_name(text: str) -> str:
    """A display name as one line of plain text: control characters (C0, DEL, C1), line
    and paragraph separators (U+2028, U+2029) become spaces, bidirectional controls go;
    runs of whitespace become one space."""
    out = "".join(" " if _is_control(ch) else "" if ch in _BIDI else ch for ch in text)
    return _SPACES.sub(" ", out).strip()


# ---------------------------------------------------------------------------- reading


def _text(value: str) -> str:
    """A compat32 raw value as text: 8-bit bytes (surrogate-escaped) read as UTF-8, else
    Latin-1; folding removed; any other CR or LF is just whitespace."""
    try:
        data = value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that is not an escaped byte
        data = value.encode("utf-8", "replace")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    return _FOLD.sub("", text)


def _tokens(text: str) -> list[_Token]:
    """The lexical tokens of a raw header value, in one left-to-right pass."""
    tokens: list[_Token] = []
    i, n = 0, len(text)
    space = False
    while i < n:
        ch = text[i]
        if ch.isspace():
            space = True
            i += 1
            continue
        if ch == "(":
            end, inner = _enclosed(text, i, "(", ")")
            tokens.append(_Token("comment", inner, space))
            i, space = end, True
            continue
        if ch == '"':
            end, inner = _enclosed(text, i, "", '"')
            tokens.append(_Token("quoted", inner, space))
        elif ch == "[":
            end, inner = _enclosed(text, i, "", "]")
            tokens.append(_Token("literal", f"[{inner}]", space))
        elif ch in _SPECIALS:
            end = i + 1
            tokens.append(_Token(ch, ch, space))
        else:
            eword = _EWORD.match(text, i)
            end = eword.end() if eword is not None else _atom_end(text, i)
            tokens.append(_Token("eword" if eword else "atom", text[i:end], space))
        i, space = end, False
    return tokens


def _atom_end(text: str, i: int) -> int:
    """The end of atom text starting at i; stops before a well-formed encoded word."""
    end = i
    while True:
        m = _ATOM.match(text, end)
        if m is not None:
            end = m.end()
        if text.startswith("=?", end) and _EWORD.match(text, end) is None:
            end += 1  # "=?" that opens nothing is ordinary text
            continue
        return max(end, i + 1)


def _enclosed(text: str, i: int, opener: str, closer: str) -> tuple[int, str]:
    """The text enclosed from text[i] to its closer (or the end of text), honouring
    backslashes, and nesting when `opener` is given (comments): (index past it, inside)."""
    depth, at, n = 1, i + 1, len(text)
    while at < n:
        ch = text[at]
        if ch == "\\":
            at += 2
            continue
        at += 1
        if ch == closer:
            depth -= 1
            if depth == 0:
                return at, text[i + 1 : at - 1]
        elif opener and ch == opener:
            depth += 1
    return n, text[i + 1 : n]


def _items(tokens: list[_Token]) -> list[list[_Token]]:
    """Split an address list into its mailboxes: at commas outside angle brackets, and
    around groups (`name: a, b;` gives the items a and b)."""
    items: list[list[_Token]] = []
    current: list[_Token] = []
    angle = addressy = False  # inside <...>; the item so far has an address part
    for token in tokens:
        kind = token.kind
        if angle:
            current.append(token)
            angle = kind != ">"
        elif kind in (",", ";"):
            items.append(current)
            current, addressy = [], False
        elif kind == ":" and not addressy:
            current = []  # a group's display name: not a mailbox
        else:
            current.append(token)
            angle = kind == "<"
            addressy = addressy or kind in ("@", "<", ">")
    items.append(current)
    return [item for item in items if any(t.kind != "comment" for t in item)]


def _mailbox(item: list[_Token]) -> Address | None:
    """One mailbox: `phrase <addr-spec>` or a bare addr-spec (its comment as the name)."""
    words = [t for t in item if t.kind != "comment"]
    kinds = [t.kind for t in words]
    if "<" in kinds:
        start = kinds.index("<")
        closed = ">" in kinds[start:]
        end = kinds.index(">", start) if closed else len(words)  # unclosed: to the end
        if any(k in ("<", "@") for k in kinds[end + 1 :]):
            return None  # a second address after the first: not one mailbox
        inner = words[start + 1 : end]
        colons = [k for k, t in enumerate(inner) if t.kind == ":"]
        if colons:  # obs-route: <@relay1,@relay2:user@host>
            inner = inner[colons[-1] + 1 :]
        addr = _addr_spec(inner)
        name = _phrase(words[:start])
    else:
        addr = _addr_spec(words)
        name = ""
    if addr is None:
        return None
    if not name:
        comments = [t for t in item if t.kind == "comment"]
        name = clean_name(_decode_text(_unquote(comments[-1].text))) if comments else ""
    return Address(addr, name)


def _addr_spec(tokens: list[_Token]) -> str | None:
    """local-part "@" domain: words (atoms or quoted strings) joined by dots, then atoms
    joined by dots or a domain literal. None when it is anything else — above all when an
    encoded word is part of it."""
    kinds = [t.kind for t in tokens]
    if kinds.count("@") != 1:
        return None
    at = kinds.index("@")
    local = _dotted(tokens[:at], ("atom", "quoted"))
    if [t.kind for t in tokens[at + 1 :]] == ["literal"]:
        host: str | None = tokens[at + 1].text
    else:
        host = _dotted(tokens[at + 1 :], ("atom",), trailing_dot=True)
    if local is None or host is None:
        return None
    address = f"{local}@{host}"
    if any(_is_control(ch) for ch in address) or any(ch.isspace() for ch in host):
        return None
    return address


def _dotted(tokens: list[_Token], words: tuple[str, ...], trailing_dot: bool = False) -> str | None:
    """word *("." word) as text; a quoted word is written bare when it can be."""
    if trailing_dot and tokens and tokens[-1].kind == ".":
        tokens = tokens[:-1]
    if len(tokens) % 2 == 0:
        return None
    parts: list[str] = []
    for k, token in enumerate(tokens):
        if k % 2:
            if token.kind != ".":
                return None
            parts.append(".")
        elif token.kind not in words:
            return None
        elif token.kind == "quoted":
            parts.append(_local_word(_unquote(token.text)))
        elif _ATEXT.fullmatch(token.text):
            parts.append(token.text)
        else:
            return None
    return "".join(parts)


def _local_word(content: str) -> str:
    """A quoted local-part word as it must be written: bare when it is atom text."""
    if _ATEXT.fullmatch(content):
        return content
    return '"' + content.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _unquote(content: str) -> str:
    return _QUOTED_PAIR.sub(r"\1", content)


# ---------------------------------------------------------------------------- names


def _phrase(tokens: list[_Token]) -> str:
    """The display name before an angle address, decoded: encoded words (also those that
    mailers put inside quoted strings) decoded, whitespace between adjacent encoded words
    dropped (RFC 2047 §6.2), all of it cleaned to one line."""
    out: list[str] = []
    last_eword = False
    for token in tokens:
        if token.kind == "eword":
            if out and token.space and not last_eword:
                out.append(" ")
            out.append(_decode_eword(token.text))
            last_eword = True
            continue
        if out and token.space:
            out.append(" ")
        if token.kind == "quoted":
            out.append(_decode_text(_unquote(token.text)))
        else:
            out.append(token.text)
        last_eword = False
    return clean_name("".join(out))


def _decode_text(text: str) -> str:
    """Free text that may hold encoded words (a quoted string, a comment), decoded."""
    out: list[str] = []
    at, after_eword = 0, False
    for m in _EWORD.finditer(text):
        gap = text[at : m.start()]
        if not (after_eword and gap.strip() == ""):
            out.append(gap)
        out.append(_decode_eword(m.group()))
        at, after_eword = m.end(), True
    out.append(text[at:])
    return "".join(out)


def _decode_eword(word: str) -> str:
    """One encoded word's text; one that cannot be decoded stays as it was written."""
    m = _EWORD.fullmatch(word)
    if m is None:
        return word
    charset, encoding, payload = m.group(1), m.group(2).lower(), m.group(3)
    if encoding == "b":
        try:
            data = base64.b64decode(payload.rstrip("=") + "===", validate=False)
        except (binascii.Error, ValueError):
            return word
    else:
        raw = payload.replace("_", " ").encode("utf-8", "replace")
        data = _Q_HEX.sub(lambda h: bytes([int(h.group(1), 16)]), raw)
    return _decode_bytes(data, charset)


def _decode_bytes(data: bytes, charset: str) -> str:
    """Bytes in a declared charset; unknown, codec-only or broken charsets read as UTF-8."""
    try:
        return data.decode(charset)
    except UnicodeDecodeError:
        try:
            return data.decode(charset, "replace")
        except (LookupError, ValueError, TypeError):
            pass
    except (LookupError, ValueError, TypeError):
        pass
    return data.decode("utf-8", "replace")


def _is_control(ch: str) -> bool:
    """Control characters (C0, DEL, C1) and the line and paragraph separators."""
    return unicodedata.category(ch) in ("Cc", "Zl", "Zp")
