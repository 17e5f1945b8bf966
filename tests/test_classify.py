"""Priority classification: keywords as whole words and phrases, case- and accent-
insensitive, in the subject and the customer's own new text; patterns; VIP senders; and
an explanation of every match."""

from __future__ import annotations

import re
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.classify import MAX_EXAMINED, Classifier, normalize
from gateway.config import Config
from gateway.parse import parse


@pytest.fixture(scope="module")
def classifier(example_config: Config) -> Classifier:
    return Classifier.from_config(example_config)


def mail(subject: str, body: str, sender: str = "kim@customer.example", extra: str = "") -> bytes:
    return (
        f"From: Kim <{sender}>\r\nTo: support@shop.example\r\nSubject: {subject}\r\n"
        f"Date: Mon, 23 Nov 2026 10:00:00 +0100\r\nMessage-ID: <a1@customer.example>\r\n{extra}"
        f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}"
    ).encode()


def classify(classifier: Classifier, subject: str, body: str, **kw: str) -> tuple[str, list[str]]:
    c = classifier.classify(parse(mail(subject, body, **kw)))
    return c.priority, [str(m) for m in c.matches]


def test_normalize() -> None:
    assert normalize("Fràud—ALERT!") == " fraud alert "
    assert normalize("STRASSE Straße") == " strasse strasse "
    assert normalize("  charged\n\ttwice ") == " charged twice "


def _whole_string_normalize(text: str) -> str:
    """normalize() as first written: one NFKD over the whole text (quadratic in a run of
    combining marks), for comparison."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " " + re.sub(r"[\W_]+", " ", bare).strip() + " "


MARKS = st.sampled_from("\u0301\u0316\u0308\u0327\u05b0\u0f71\u0f72\u0f73\u0344")


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(st.one_of(st.characters(), MARKS, st.sampled_from("éßİﬁ½Å")), max_size=300))
def test_normalize_in_pieces_equals_one_pass(chars: list[str]) -> None:
    text = "".join(chars)
    assert normalize(text) == _whole_string_normalize(text)


def test_long_run_of_combining_marks_is_dropped() -> None:
    # 40,000 marks of alternating classes: NFKD used to sort them in quadratic time.
    assert normalize("Fr" + "\u0316\u0301" * 20_000 + "aud!") == " fraud "


def test_only_the_start_of_a_huge_field_is_examined(classifier: Classifier) -> None:
    filler = "lorem ipsum " * (MAX_EXAMINED // 12 + 10)
    assert classify(classifier, "Question", "refund please " + filler)[0] == "high"
    c = classifier.classify_text([("subject", filler + " fraud")], None)
    assert c.priority == "normal"


@pytest.mark.parametrize(
    ("subject", "body", "priority", "explanation"),
    [
        ("I was charged twice", "", "urgent", "subject: 'charged twice' → urgent"),
        (
            "Question",
            "I was CHARGED\n   TWICE yesterday",
            "urgent",
            "body: 'charged twice' → urgent",
        ),
        ("Frãud on my card", "", "urgent", "subject: 'fraud' → urgent"),
        ("Where is my refund?", "", "high", "subject: 'refund' → high"),
        ("Hello", "The parcel never arrived.", "high", "body: 'never arrived' → high"),
        ("Hello", "Please cancel my order!", "high", "body: 'cancel my order' → high"),
        ("Wholesale", "", "low", "subject: 'wholesale' → low"),
        (
            "Hi",
            "Where is order #123456 missing",
            "high",
            "body: 'order\\\\s*#?\\\\s*\\\\d{4,}\\\\s+(is\\\\s+)?missing' → high",
        ),
    ],
)
def test_matches(
    classifier: Classifier, subject: str, body: str, priority: str, explanation: str
) -> None:
    got, matched = classify(classifier, subject, body)
    assert got == priority
    assert matched[0] == explanation


@pytest.mark.parametrize(
    ("subject", "body"),
    [
        ("Refunded already, thanks", ""),  # "refund" only as a whole word
        ("", "defraud"),  # inside another word
        ("", "charged, but only once; twice the fun"),  # words of the phrase apart
        ("", "Thanks!\n\n> I want a refund because of fraud\n"),  # quoted earlier mail
        ("", "Thanks!\n-- \nKim, hacked together in 2026"),  # signature
        ("", "Thanks!\n\nOn Mon, 9 Nov 2026 at 10:12, Shop <support@shop.example> wrote:\nfraud\n"),
    ],
)
def test_does_not_match(classifier: Classifier, subject: str, body: str) -> None:
    assert classify(classifier, subject, body) == ("normal", [])


def test_highest_priority_wins_and_all_matches_are_recorded(classifier: Classifier) -> None:
    priority, matched = classify(classifier, "wholesale refund", "someone hacked my account")
    assert priority == "urgent"
    assert matched == [
        "body: 'hacked' → urgent",
        "subject: 'refund' → high",
        "subject: 'wholesale' → low",
    ]


def test_vip_is_raised_to_at_least_min_priority(classifier: Classifier) -> None:
    assert classify(classifier, "Hello", "a question", sender="ceo@partner.example") == (
        "high",
        ["sender: VIP 'ceo@partner.example' → at least high"],
    )
    priority, matched = classify(classifier, "Hi", "question", sender="Buyer@BigCustomer.example")
    assert priority == "high"
    assert matched == ["sender: VIP '*@bigcustomer.example' → at least high"]


def test_vip_never_lowers(classifier: Classifier) -> None:
    priority, matched = classify(classifier, "fraud", "", sender="ceo@partner.example")
    assert priority == "urgent"
    assert matched[0] == "subject: 'fraud' → urgent"


def test_html_only_body(classifier: Classifier) -> None:
    raw = (
        b"From: kim@customer.example\r\nSubject: Hi\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/html; charset=utf-8\r\n\r\n"
        b"<html><head><style>p{color:red}/* refund */</style></head><body>"
        b"<p>The box arrived <b>damaged</b>.</p>"
        b'<div class="gmail_quote">On Mon ... wrote:<blockquote>fraud</blockquote></div>'
        b"</body></html>"
    )
    c = classifier.classify(parse(raw))
    assert c.priority == "high"
    assert [str(m) for m in c.matches] == ["body: 'damaged' → high"]


def test_customer_override_for_web_forms(classifier: Classifier) -> None:
    parsed = parse(mail("New message", "hello", sender="mailer@shopify.example"))
    assert classifier.classify(parsed, customer="ceo@partner.example").priority == "high"


def test_reason_text(classifier: Classifier) -> None:
    c = classifier.classify(parse(mail("Hello", "just a question")))
    assert c.reason == "nothing matched → normal (default)"
