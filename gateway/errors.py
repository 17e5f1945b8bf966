"""The exception tree: every error says whose fault it is.

    GatewayError
    ├── ConfigError      the operator's configuration is wrong (CLI exit status 2)
    ├── InputError       the sender's input cannot be used (SMTP 5xx, CLI: a per-file error)
    ├── TemporaryError   our own passing failure; retrying later may work (SMTP 451)
    ├── AlreadyRunning   another gateway already runs on this database (CLI exit status 75)
    └── LoginRequired    the mailbox owner must sign in again (`sla-gateway login`): an
                         OAuth refresh token is missing, revoked or expired

Adapters translate these into their outside's language; the core raises only these
(and ValueError for programming mistakes such as naive datetimes).
"""

from __future__ import annotations

from dataclasses import dataclass


class GatewayError(Exception):
    """Base class of every error sla-gateway raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a configuration file: where, what, and what would be right."""

    file: str
    key: str
    message: str
    hint: str = ""

    def __str__(self) -> str:
        where = f"{self.file}: {self.key}" if self.key else self.file
        text = f"{where}: {self.message}"
        return f"{text}; {self.hint}" if self.hint else text


class ConfigError(GatewayError):
    """The configuration is unusable; carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class InputError(GatewayError):
    """The sender's input cannot be used (malformed beyond repair, too large, ...)."""


class TemporaryError(GatewayError):
    """Our own failure that may pass (database locked, disk full, server down)."""


class AlreadyRunning(GatewayError):
    """Another gateway holds this database's instance lock: two would each process and
    acknowledge the same mail. The message names the database and the other's pid."""


class LoginRequired(GatewayError):
    """The mailbox owner must sign in again: no OAuth token is stored, or the authorization
    server refused the stored refresh token (revoked, expired, password changed). Nothing
    the gateway can fix by retrying alone; the message says which command to run."""
