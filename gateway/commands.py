"""Commands by address: `support+resolved@shop.example` marks the conversation a mail answers.

Owns: which commands exist (`COMMANDS`), the addresses a message was delivered or copied
to (`addressed_to`: the SMTP envelope, Delivered-To, X-Original-To, To, Cc and Bcc), and the
commands among them (`commands_in`): `<local part><delimiter><command>@<domain>` of an
inbox address or alias, with that inbox's `command_delimiter`, compared case-insensitively.
An unknown command, a suffix on an address that is not ours, or a foreign domain gives
nothing. Addresses are read from the raw header values (`parse` does that), never from
decoded text, so an encoded-word display name cannot smuggle one in.

Pure: values in, values out. It decides neither who may give a command (the runner does:
only the team) nor what a command changes (`conversations.apply_command`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .configkeys import PRIORITIES
from .configmodel import Config
from .model import Parsed

# The state commands first, then the priorities (configkeys.PRIORITIES, highest first).
COMMANDS = ("resolved", "pending", "open", *PRIORITIES)


def commands_in(addresses: Iterable[str], config: Config) -> tuple[str, ...]:
    """The commands these addresses carry, each once, in the order first seen."""
    found: dict[str, None] = {}
    for address in addresses:
        ours = config.suffix_for(address)  # the inbox whose address fits it most closely
        if ours is not None and ours[1] in COMMANDS:
            found[ours[1]] = None
    return tuple(found)


def addressed_to(parsed: Parsed, envelope_to: Sequence[str]) -> list[str]:
    """Every address the message was delivered or copied to: the envelope recipients as
    the SMTP client gave them, then Delivered-To and X-Original-To (where the receiving
    servers delivered it; that is where a Bcc shows), then To, Cc and Bcc. Each once
    (compared case-insensitively), in that order.

    Bcc is there for the writer's own copy in a Sent folder, which keeps it (Gmail,
    Outlook, Thunderbird, Apple Mail): the copy delivered to `support+resolved@` and the
    Sent copy are one message to the dedup, and the one stored may be the Sent copy."""
    seen: dict[str, str] = {}
    envelope = (a.strip() for a in envelope_to)
    headers = (a.addr for a in (*parsed.delivered_to, *parsed.to, *parsed.cc, *parsed.bcc))
    for address in (*envelope, *headers):
        if address and "@" in address:
            seen.setdefault(address.lower(), address)
    return list(seen.values())
