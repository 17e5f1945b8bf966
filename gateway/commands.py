"""Commands by address: `support+resolved@shop.example` in a team member's mail.

Owns: which commands a message carries — the plus-addresses of our own inbox addresses
among its envelope recipients and its Delivered-To, X-Original-To, To and Cc headers
(addresses read from the raw headers, never from decoded display text). Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from email.utils import getaddresses

from .config import Config
from .model import Parsed

COMMANDS = ("resolved", "pending", "open", "urgent", "high", "normal", "low")
_DELIVERY = ("delivered-to", "x-original-to")


def commands_in(addresses: Iterable[str], config: Config) -> tuple[str, ...]:
    """The known commands among `addresses`, in order, once each."""
    ours: dict[str, str] = {}  # "support@shop.example" -> its inbox's delimiter
    for inbox in config.inboxes:
        for address in inbox.addresses:
            ours[address.lower()] = getattr(inbox, "command_delimiter", "+")
    found: list[str] = []
    for address in addresses:
        local, at, domain = address.strip().lower().rpartition("@")
        if not at:
            continue
        for own, delimiter in ours.items():
            own_local, _, own_domain = own.rpartition("@")
            if domain != own_domain or not local.startswith(own_local + delimiter):
                continue
            command = local[len(own_local) + len(delimiter):]
            if command in COMMANDS and command not in found:
                found.append(command)
    return tuple(found)


def addressed_to(parsed: Parsed, envelope_to: Sequence[str]) -> list[str]:
    """Every address the message was delivered or written to."""
    found = [a for a in envelope_to if a]
    for name in _DELIVERY:
        found.extend(addr for _, addr in getaddresses(list(parsed.header_all(name))) if addr)
    found.extend(a.addr for a in (*parsed.to, *parsed.cc))
    return found
