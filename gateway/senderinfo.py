"""What the acknowledgment may take from a customer's own headers: the name it greets
them by, and whether their Date header shows their clock. Pure: values in, values out.

The greeting uses the From display name only when it reads as a name. It is dropped
("Hello Jane," becomes "Hello,") when it holds U+FFFD (bytes lost in decoding), a byte
order mark, control characters (in the From header as decoded, before they were made
spaces), mojibake (UTF-8 read as Latin-1 or Windows-1252: "JosÃ©" for "José", "â€™"),
an address, or nothing but quotes and punctuation.

The acknowledgment may add the deadline in the sender's time ("4:30 AM UTC−05:00 your
time"), read from the offset of their Date header. That offset is the customer's only when
their own mail program wrote the header; it is not used when the mail shows signs of
having been written by something else:

  sign                                             why
  no Date, or an offset of zero (+0000, -0000,     servers, scripts and form mailers stamp
  UTC, GMT)                                        UTC; "-0000" even means "zone unknown"
  a configured web-form sender                     the form's mailer wrote the Date
  X-PHP-Originating-Script                         written by a PHP script on a web server
  X-Mailer / User-Agent naming a form, shop or     the same (PHPMailer, WordPress, a shop
  CMS mailer or a programming library              system, Nodemailer, ...)
  a Sender that is not the From address            sent on someone's behalf by a system

Mail programs people use (Thunderbird, Apple Mail, Outlook, K-9, webmail) name themselves
in these headers too; only the hints below count against a Date.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from email.utils import getaddresses

from .model import Parsed

# Words in X-Mailer / User-Agent that name a web form, shop system, CMS or mail library.
FORM_MAILER_HINTS = re.compile(
    r"(?i)php|wordpress|\bwp\b|wpforms|contact ?form|gravity ?forms|ninja ?forms|elementor|"
    r"drupal|joomla|typo3|shopify|woocommerce|magento|prestashop|shopware|wix|squarespace|"
    r"hubspot|formspree|jotform|typeform|swift ?mailer|symfony|laravel|zend|nodemailer|"
    r"django|action ?mailer|rails|python|perl|java\b|\bcms\b|\bform\b"
)


def customer_date(parsed: Parsed, *, form: bool) -> datetime | None:
    """The Date header when it plausibly is the customer's own clock, else None."""
    date = parsed.date
    offset = date.utcoffset() if date is not None else None
    if date is None or not offset or form:
        return None
    if parsed.has_header("x-php-originating-script"):
        return None
    for name in ("x-mailer", "user-agent"):
        if any(FORM_MAILER_HINTS.search(value) for value in parsed.header_all(name)):
            return None
    sender = [addr.lower() for _, addr in getaddresses(list(parsed.header_all("sender"))) if addr]
    if sender and (parsed.sender is None or sender[0] != parsed.sender.addr.lower()):
        return None
    return date


_QUOTES = "\"'`´‘’‚“”„«»‹›"


def greeting_name(name: str, from_header: str = "") -> str:
    """The display name to greet with, or "" when it is junk (see the module's rules).
    `from_header` is the From header as decoded, control characters and all."""
    text = name.strip()
    if not text or "@" in text or "\ufffd" in text or "\ufeff" in text:
        return ""
    if any(unicodedata.category(ch) == "Cc" for ch in from_header.replace("\t", " ")):
        return ""
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co") for ch in text):
        return ""
    if _mojibake(text):
        return ""
    bare = text.strip(_QUOTES + " ")
    if not any(ch.isalpha() for ch in bare):
        return ""
    return bare if text[:1] in _QUOTES and text[-1:] in _QUOTES else text


def _mojibake(text: str) -> bool:
    """Whether `text` is UTF-8 that was read as Latin-1 or Windows-1252 ("JosÃ©"): it
    encodes back to bytes that are valid UTF-8 and not plain ASCII. A real accented name
    ("Zoë", "Jürgen") never does: its Latin-1 bytes are not valid UTF-8."""
    if text.isascii():
        return False
    for codec in ("cp1252", "latin-1"):
        try:
            data = text.encode(codec)
        except UnicodeEncodeError:
            continue
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        return True
    return False
