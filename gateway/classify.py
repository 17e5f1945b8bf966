"""Priority classification: which priority a message gets, and why.

Owns: matching the configured keywords (whole words and phrases, case- and
accent-insensitive), regular-expression patterns and VIP senders against a message's
subject and the customer's own new text, and explaining every match. The highest matched
priority wins; VIP senders are raised to at least their minimum; no match means normal.
Only the first `MAX_EXAMINED` characters of each field are matched (the parser already caps
the new text; this also bounds a huge subject), so matching stays linear and bounded.
Pure: takes `Parsed` and the priority rules, returns a `Classification`; no I/O.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from .config import PRIORITIES, Config, PriorityConfig, VipConfig
from .model import Classification, Match, Parsed

_NON_WORD = re.compile(r"[\W_]+")
MAX_EXAMINED = 64 * 1024  # characters of each field (subject, new text) matched


def normalize(text: str) -> str:
    """Casefold, drop diacritics and punctuation: "Fràud—ALERT!" -> " fraud alert "."""
    folded = text.casefold()
    # NFKD sorts each run of combining marks in time quadratic in the run's length; in
    # pieces of 64 characters the same marks come out (in another order, but they are all
    # dropped below), so a hostile run of thousands of marks costs no more than text.
    decomposed = "".join(
        unicodedata.normalize("NFKD", folded[i : i + 64]) for i in range(0, len(folded), 64)
    )
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " " + _NON_WORD.sub(" ", bare).strip() + " "


@dataclass(frozen=True)
class _Rule:
    priority: str
    label: str  # what is shown: the keyword as configured, or the pattern text
    phrase: str | None  # normalized keyword, padded with spaces
    pattern: re.Pattern[str] | None


class Classifier:
    """Priority rules compiled once from the configuration, applied to many messages."""

    def __init__(self, priorities: Sequence[PriorityConfig], vip: VipConfig) -> None:
        order = {name: i for i, name in enumerate(PRIORITIES)}
        self._priorities = sorted(priorities, key=lambda p: order[p.name])
        self._vip = vip
        self._rules: list[_Rule] = []
        for p in self._priorities:
            for word in p.keywords:
                self._rules.append(_Rule(p.name, word, normalize(word), None))
            for pattern in p.patterns:
                self._rules.append(_Rule(p.name, pattern.pattern, None, pattern))

    @classmethod
    def from_config(cls, config: Config) -> Classifier:
        return cls(config.priorities, config.vip)

    def classify(self, parsed: Parsed, customer: str | None = None) -> Classification:
        """Classify by subject and new text; `customer` overrides the From address
        (web-form mail whose customer is in Reply-To)."""
        fields = (("subject", parsed.subject), ("body", parsed.new_text))
        return self.classify_text(
            fields, customer or (parsed.sender.addr if parsed.sender else None)
        )

    def classify_text(
        self, fields: Sequence[tuple[str, str]], sender: str | None
    ) -> Classification:
        capped = [(where, text[:MAX_EXAMINED]) for where, text in fields]
        normalized = [(where, text, normalize(text)) for where, text in capped]
        matches: list[Match] = []
        for rule in self._rules:
            for where, text, plain in normalized:
                if rule.phrase is not None and rule.phrase in plain:
                    matches.append(Match(rule.priority, where, rule.label))
                    break
                if rule.pattern is not None and rule.pattern.search(text):
                    matches.append(Match(rule.priority, where, rule.label))
                    break
        rank = {name: i for i, name in enumerate(PRIORITIES)}  # lower index = higher priority
        best = min((m.priority for m in matches), key=rank.__getitem__, default="normal")
        if sender and self._vip.senders:
            address = sender.lower()
            for entry in self._vip.senders:
                if fnmatchcase(address, entry):
                    vip_match = Match(self._vip.min_priority, "sender", entry)
                    if rank[self._vip.min_priority] < rank[best]:
                        best = self._vip.min_priority
                    matches.append(vip_match)
                    break
        decisive = [m for m in matches if m.priority == best]
        others = [m for m in matches if m.priority != best]
        return Classification(best, tuple(decisive + others))
