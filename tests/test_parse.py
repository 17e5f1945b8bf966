"""parse() never raises on deliverable mail and stays linear (issue 11).

Each hostile shape yields a `Parsed` with a defect that says what was wrong; the worst
cases for time (stray HTML end tags, reply-header bait on a long line, huge and deeply
nested messages) still give the right text. Speed itself is measured by
bench/parse_worst.py, never asserted here. A property test mutates the real fixtures.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.errors import InputError
from gateway.model import Parsed
from gateway.parse import (
    MAX_DEPTH,
    MAX_READ,
    MAX_SUBJECT,
    MAX_TEXT,
    html_to_text,
    new_text,
    parse,
)
from tests.conftest import DATA

BROKEN = DATA / "broken"
HEAD = (
    b"From: Kim Customer <kim@customer.example>\r\n"
    b"To: support@shop.example\r\n"
    b"Subject: Where is my parcel?\r\n"
    b"Date: Fri, 20 Nov 2026 16:40:00 +0100\r\n"
    b"Message-ID: <kim-1@customer.example>\r\n"
    b"MIME-Version: 1.0\r\n"
)


def _plain(body: bytes, head: bytes = HEAD) -> bytes:
    return head + b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + body + b"\r\n"


def _html(body: bytes) -> bytes:
    return HEAD + b"Content-Type: text/html; charset=utf-8\r\n\r\n" + body + b"\r\n"


# ---------------------------------------------------------------------------- fixtures

CHARSET_NAMES = {
    "hex": "hex",
    "base64": "base64",
    "rot13": "rot13",
    "zlib": "zlib",
    "uu": "uu",
    "quopri": "quopri",
    "idna": "idna",
    "undefined": "undefined",
    "nul": "utf-8\\x00x",
}


@pytest.mark.parametrize("name", list(CHARSET_NAMES))
def test_codec_only_and_unknown_charsets_fall_back_with_a_defect(name: str) -> None:
    parsed = parse((BROKEN / f"charset_{name}.eml").read_bytes())
    assert f"UnknownCharset:{CHARSET_NAMES[name]}" in parsed.defects
    # Body and Subject encoded word both fell back to a lossless 8-bit reading (cp1252).
    assert parsed.subject == "Paket hängt fest"
    assert "Können Sie bitte" in parsed.text
    assert parsed.sender is not None and parsed.sender.addr == "petra.weiss@customer.example"


def test_undecodable_encoded_word_is_kept_as_written() -> None:
    parsed = parse((BROKEN / "header_parse_error.eml").read_bytes())
    assert "UndecodableEncodedWord" in parsed.defects
    assert parsed.subject == "=?utf-8?B?A?= Frage zur Rechnung 2026-2201"
    assert parsed.sender is not None and parsed.sender.name == "Tom Becker"
    assert "invoice for order 8812" in parsed.new_text


def test_date_with_an_eleven_digit_year_is_implausible() -> None:
    parsed = parse((BROKEN / "date_overflow.eml").read_bytes())
    assert "ImplausibleDate" in parsed.defects
    assert parsed.date is None
    assert "has not arrived" in parsed.text


def test_rfc2231_charset_with_8bit_body() -> None:
    parsed = parse((BROKEN / "rfc2231_charset_8bit.eml").read_bytes())
    assert "UnknownCharset:\\xfctf-8" in parsed.defects
    assert "Straße 12 statt 21" in parsed.text


def test_rfc2231_charset_that_names_a_real_charset_is_used() -> None:
    raw = HEAD + b"Content-Type: text/plain; charset*=us-ascii'de'iso-8859-1\r\n\r\nGr\xfc\xdfe\r\n"
    parsed = parse(raw)
    assert parsed.text.strip() == "Grüße"
    assert not any(d.startswith("Unknown") for d in parsed.defects)


def test_damaged_first_header_line_recovers_the_headers() -> None:
    parsed = parse((BROKEN / "damaged_first_line.eml").read_bytes())
    assert "DamagedFirstHeaderLine" in parsed.defects
    assert parsed.sender is not None and parsed.sender.addr == "lea.roth@customer.example"
    assert parsed.subject == "Umtausch Groesse M"
    assert parsed.return_path == "lea.roth@customer.example"
    assert "gegen Größe M tauschen" in parsed.text


@pytest.mark.parametrize(
    "first_line",
    [b"\r\n", b"\xef\xbb\xbf", b">From kim@customer.example Fri Nov 20 16:40:00 2026\r\n"],
    ids=["blank-line", "byte-order-mark", "quoted-mbox-separator"],
)
def test_other_damaged_starts_recover(first_line: bytes) -> None:
    parsed = parse(first_line + _plain(b"Hello"))
    assert parsed.sender is not None and parsed.sender.addr == "kim@customer.example"
    assert parsed.text.strip() == "Hello"
    assert parsed.defects


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"   \r\n\r\n",
        b"\x00\x01\x02 not a mail\n\nat all",
        (BROKEN / "binary_junk.eml").read_bytes(),
    ],
    ids=["empty", "blank", "junk", "binary-junk"],
)
def test_input_without_any_header_line_is_still_an_input_error(raw: bytes) -> None:
    with pytest.raises(InputError):
        parse(raw)


# ---------------------------------------------------------------------------- nesting


def _nested_multiparts(levels: int) -> bytes:
    nest = b"".join(
        b'Content-Type: multipart/mixed; boundary="level-%d"\r\n\r\n--level-%d\r\n' % (i, i)
        for i in range(levels)
    )
    return HEAD + nest + b"Content-Type: text/plain\r\n\r\nhello from the bottom\r\n"


@pytest.mark.parametrize("levels", [1000, 5000])
def test_deeply_nested_multiparts_stop_at_the_depth_limit(levels: int) -> None:
    parsed = parse(_nested_multiparts(levels))
    assert "NestingTooDeep" in parsed.defects
    assert len(parsed.content_types) == MAX_DEPTH + 1
    assert parsed.sender is not None and parsed.subject == "Where is my parcel?"


def test_nesting_within_the_limit_finds_the_text() -> None:
    parsed = parse(_nested_multiparts(MAX_DEPTH - 1))
    assert parsed.text.strip() == "hello from the bottom"
    assert "NestingTooDeep" not in parsed.defects


def test_deeply_nested_attached_messages() -> None:
    nest = b"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n" * 1000
    parsed = parse(HEAD + nest + b"\r\nbody\r\n")
    assert parsed.content_types == ("message/rfc822",)
    assert parsed.text == ""


@pytest.mark.parametrize("levels", [400, 5000])
def test_nested_comments_in_address_and_date_headers(levels: int) -> None:
    comment = b"(" * levels + b"x" + b")" * levels
    head = HEAD.replace(
        b"From: Kim Customer <kim@customer.example>",
        b"From: kim@customer.example " + comment,
    ).replace(b"+0100\r\n", b"+0100 " + comment + b"\r\n")
    head += b"Cc: " + comment + b" cc@customer.example\r\n"
    parsed = parse(_plain(b"hello", head))
    assert isinstance(parsed, Parsed)
    assert parsed.text.strip() == "hello"
    # The address reader keeps no stack (gateway/addresses.py): any depth still reads.
    assert parsed.sender is not None and parsed.sender.addr == "kim@customer.example"


# ---------------------------------------------------------------------------- MIME details


def test_multipart_alternative_prefers_plain_and_keeps_html() -> None:
    raw = (
        HEAD + b'Content-Type: multipart/alternative; boundary="=_alt"\r\n\r\n'
        b"preamble\r\n--=_alt\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\nGr=FC=DFe, wo ist=\r\n mein Paket?\r\n"
        b"--=_alt  \r\nContent-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"PHA+SGFsbG88L3A+\r\n--=_alt--\r\nepilogue\r\n"
    )
    parsed = parse(raw)
    assert parsed.content_types == ("multipart/alternative", "text/plain", "text/html")
    assert parsed.text == "Grüße, wo ist mein Paket?"
    assert not parsed.html_only
    assert not parsed.defects


def test_attachment_and_attached_message_text_is_not_the_senders() -> None:
    raw = (
        HEAD + b"Content-Type: multipart/mixed; boundary=b1\r\n\r\n"
        b"--b1\r\nContent-Type: message/rfc822\r\n\r\nSubject: old\r\n\r\nold fraud text\r\n"
        b"--b1\r\nContent-Type: text/plain\r\nContent-Disposition: attachment\r\n\r\nfile\r\n"
        b"--b1\r\nContent-Type: text/plain\r\n\r\nthe new words\r\n--b1--\r\n"
    )
    parsed = parse(raw)
    assert parsed.content_types == ("multipart/mixed", "message/rfc822", "text/plain", "text/plain")
    assert parsed.text.strip() == "the new words"


def test_delimiter_among_part_headers_ends_the_part() -> None:
    raw = (
        HEAD + b"Content-Type: multipart/mixed; boundary=b1\r\n\r\n"
        b"--b1\r\nContent-Type: text/plain\r\n--b1\r\nContent-Type: text/plain\r\n\r\nreal\r\n--b1--\r\n"
    )
    parsed = parse(raw)
    assert parsed.content_types == ("multipart/mixed", "text/plain", "text/plain")
    assert parsed.text == ""  # the first text part is the one without a body


def test_wrong_and_missing_boundaries() -> None:
    wrong = (
        HEAD + b"Content-Type: multipart/mixed; boundary=expected\r\n\r\n"
        b"--other\r\nContent-Type: text/plain\r\n\r\nhello\r\n--other--\r\n"
    )
    parsed = parse(wrong)
    assert "StartBoundaryNotFoundDefect" in parsed.defects
    assert parsed.content_types == ("multipart/mixed",)
    missing = HEAD + b"Content-Type: multipart/mixed\r\n\r\nhello\r\n"
    assert "NoBoundaryInMultipartDefect" in parse(missing).defects


def test_huge_content_type_header_is_read_in_one_pass() -> None:
    raw = HEAD + b'Content-Type: text/plain; name="' + b";" * 200_000 + b"\r\n\r\nhello\r\n"
    assert parse(raw).text.strip() == "hello"


# ---------------------------------------------------------------------------- headers


def test_encoded_words_join_and_decode() -> None:
    head = HEAD.replace(
        b"Subject: Where is my parcel?",
        b"Subject: Re: =?utf-8?B?R3LDvMOf?=\r\n =?utf-8?Q?e_aus_M=C3=BC?= =?utf-8?Q?nchen?= !",
    )
    assert parse(_plain(b"x", head)).subject == "Re: Grüße aus München !"


def test_encoded_word_split_inside_a_character_joins_before_decoding() -> None:
    # "ü" is C3 BC in UTF-8; a mailer split it over two encoded words.
    head = HEAD.replace(
        b"Subject: Where is my parcel?", b"Subject: =?utf-8?Q?M=C3?= =?utf-8?Q?=BCnchen?="
    )
    assert parse(_plain(b"x", head)).subject == "München"


def test_long_runs_of_spaces_and_unclosed_encoded_words_in_headers() -> None:
    head = HEAD.replace(
        b"Subject: Where is my parcel?", b"Subject: a" + b" " * 100_000 + b"\r\n\tb"
    )
    head += b"X-Junk: " + (b"=?utf-8?q?" + b"x" * 10) * 20_000 + b"\r\n"
    parsed = parse(_plain(b"x", head))
    assert parsed.subject == "a b"
    assert (parsed.header("x-junk") or "").startswith("=?utf-8?q?xxxxxxxxxx=?utf-8?q?")


def test_huge_subject_is_capped() -> None:
    head = HEAD.replace(b"Subject: Where is my parcel?", b"Subject: " + b"[" * 300_000)
    parsed = parse(_plain(b"x", head))
    assert len(parsed.subject) == MAX_SUBJECT
    assert "SubjectTruncated" in parsed.defects
    assert len(parsed.header("subject") or "") == 300_000


# ---------------------------------------------------------------------------- linear time


def test_stray_end_tags_give_the_right_text() -> None:
    # 176 KB of never-closed <span> and stray </b>: each end tag used to rescan the stack.
    body = b"<html><body><p>Mein Paket ist besch\xc3\xa4digt.</p>" + b"<span>x</b>" * 16_000
    body += b'<div class="gmail_quote">On Mon someone wrote: fraud</div></body></html>'
    parsed = parse(_html(body))
    assert parsed.html_only
    assert parsed.text.startswith("Mein Paket ist beschädigt.\nxxx")
    assert "fraud" not in parsed.text


def test_stray_end_tags_still_close_the_right_element() -> None:
    html = "<div>new<blockquote>old</i></b>quoted</span></blockquote>after</div>"
    assert html_to_text(html) == "newafter"


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ("<p>a &amp; b&nbsp;c</p><p>d</p>", "a & b c\n\nd"),
        ("<style>p{x:'</p>'}</style><script>if (a<b) {}</script>visible", "visible"),
        ('<a title="1 > 0" href=x>link</a> text', "link text"),
        ("line<br/>next<br>last", "line\n\nnext\nlast"),
        ("kept<!-- a comment -->kept", "keptkept"),
        ("before<!-- never closed", "before"),
        ('before<a href="never closed', "before"),
        ("a < b and c<d", "a < b and c"),
        ("<!DOCTYPE html><?xml x?><b>bold</b>", "bold"),
        ('new<div id="divRplyFwdMsg">From: someone</div>old', "new"),
        ('<div class="MOZ-CITE-PREFIX">On ... wrote:</div><p>mine</p>', "mine"),
        ("<a<a<a<a<a text", ""),
    ],
)
def test_html_to_text(html: str, text: str) -> None:
    assert html_to_text(html) == text


def test_unclosed_tag_starts_do_not_stop_parsing_early() -> None:
    parsed = parse(_html(b"<p>Hallo</p>" + b"<a" * 100_000))
    assert parsed.text == "Hallo"


@pytest.mark.parametrize(
    "line",
    [
        b"Am 9. Nov. 2026" + b" schrieb Anna" * 30_000,
        b"On Mon, 9 Nov 2026" + b" wrote:    x" * 33_000,
    ],
    ids=["am-schrieb", "on-wrote"],
)
def test_reply_header_bait_on_a_long_line_is_text(line: bytes) -> None:
    parsed = parse(_plain(b"Mein Paket fehlt.\r\n" + line + b"\r\n\r\nDanke"))
    assert parsed.text.startswith("Mein Paket fehlt.\r\n" + line[:30].decode())
    assert len(parsed.text) == MAX_TEXT
    assert parsed.new_text.startswith("Mein Paket fehlt.\n" + line[:30].decode())


@pytest.mark.parametrize(
    "header",
    [
        "On Mon, 9 Nov 2026 at 10:12, Anna Schmidt <anna@shop.example> wrote:",
        "Am 09.11.2026 um 10:12 schrieb Anna Schmidt <anna@shop.example>:",
        "Le lun. 9 nov. 2026 à 10:12, Anna <anna@shop.example> a écrit :",
        "El lun, 9 nov 2026 a las 10:12, Anna (<anna@shop.example>) escribió:",
        "Op ma 9 nov. 2026 om 10:12 schreef Anna <anna@shop.example>:",
    ],
)
def test_real_reply_headers_still_cut_the_quote(header: str) -> None:
    assert new_text(f"My new words\n\n{header}\n> old fraud") == "My new words"
    # Gmail wraps long attributions over two lines.
    first, _, rest = header.partition(" <")
    assert new_text(f"My new words\n{first}\n<{rest}\n> old") == "My new words"


def test_huge_messages_read_their_first_megabyte() -> None:
    photo = b"iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA\r\n"
    raw = (
        HEAD + b'Content-Type: multipart/mixed; boundary="outer"\r\n\r\n'
        b"--outer\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        b"Here is the photo of the damaged parcel.\r\n"
        b'--outer\r\nContent-Type: image/png; name="parcel.png"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        + photo * (25_000_000 // len(photo))
        + b'--outer\r\nContent-Type: image/png; name="second.png"\r\n\r\nxx\r\n--outer--\r\n'
    )
    parsed = parse(raw)
    assert parsed.size == len(raw) > MAX_READ
    assert parsed.content_types == ("multipart/mixed", "text/plain", "image/png")
    assert parsed.text.strip() == "Here is the photo of the damaged parcel."
    assert "ReadFirst1MiB" in parsed.defects


def test_many_tiny_parts_are_listed_up_to_the_limit() -> None:
    raw = (
        HEAD + b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + b"--b\r\n\r\nx\r\n" * 100_000
    )
    parsed = parse(raw)
    assert "TooManyParts" in parsed.defects
    assert parsed.text.strip() == "x"


def test_long_text_is_capped_and_new_text_comes_from_the_start() -> None:
    body = b"Where is my parcel?\r\n\r\n" + b"Some more words on a line.\r\n" * 10_000
    parsed = parse(_plain(body))
    assert len(parsed.text) == MAX_TEXT
    assert "TextTruncated" in parsed.defects
    assert parsed.new_text.startswith("Where is my parcel?")


# ---------------------------------------------------------------------------- property

FIXTURES = sorted(p for p in DATA.rglob("*.eml") if p.name != "binary_junk.eml")
KNOWN_HEADER = re.compile(
    rb"(?im)^(from|to|cc|subject|date|message-id|received|return-path|reply-to|sender"
    rb"|delivered-to|mime-version|content-type|in-reply-to|references):"
)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    raw = draw(st.sampled_from(FIXTURES)).read_bytes()
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(
            st.sampled_from(
                ["truncate", "boundary", "no-boundary", "8bit-header", "nul", "nest", "huge-line"]
            )
        )
        at = draw(st.integers(0, len(raw)))
        if kind == "truncate":
            raw = raw[:at]
        elif kind == "boundary":
            raw = re.sub(rb'boundary="?([^";\r\n]+)"?', b"boundary=wrong-one", raw, count=1)
        elif kind == "no-boundary":
            raw = re.sub(rb'boundary="?[^";\r\n]+"?', b"", raw)
        elif kind == "8bit-header":
            end = raw.find(b"\n\n") if b"\r\n\r\n" not in raw else raw.find(b"\r\n\r\n")
            at = draw(st.integers(0, max(0, end)))
            raw = (
                raw[:at]
                + draw(st.binary(min_size=1, max_size=8).map(lambda b: bytes(x | 0x80 for x in b)))
                + raw[at:]
            )
        elif kind == "nul":
            raw = raw[:at] + b"\x00" * draw(st.integers(1, 4)) + raw[at:]
        elif kind == "nest":
            levels = draw(st.sampled_from([50, 1000]))
            nest = b"".join(
                b"Content-Type: multipart/mixed; boundary=n%d\r\n\r\n--n%d\r\n" % (i, i)
                for i in range(levels)
            )
            end = raw.find(b"\r\n\r\n")
            raw = raw[: max(0, end)] + b"\r\n" + nest + raw[max(0, end) + 4 :]
        else:
            unit = draw(
                st.sampled_from([b"x", b" ", b"<a", b"</b>", b"(", b"=?a?q?", b"On a schrieb "])
            )
            raw = raw[:at] + unit * (300_000 // len(unit)) + raw[at:]
    return raw


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(mutated())
def test_parse_always_returns_for_mutated_fixtures(raw: bytes) -> None:
    try:
        parsed = parse(raw)
    except InputError:
        # Only when no line that starts like a known header survived the mutation.
        assert not KNOWN_HEADER.search(raw[: 8 << 10])
        return
    assert isinstance(parsed, Parsed)
    # The last lines of defence were not needed: every failure was foreseen.
    assert not any(d.startswith(("ParseFailed", "UnreadableBody")) for d in parsed.defects)
    assert len(parsed.text) <= MAX_TEXT
