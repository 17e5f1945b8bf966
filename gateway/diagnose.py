"""`check --connect`: trying every outside connection the configuration names, and saying
in words what is wrong and how to fix it.

Owns: logging in to each inbox's IMAP server (and listing the folders it would watch and
the Sent folder it finds), connecting and authenticating to the outgoing SMTP server (or
checking the maildir is writable), checking the database and its migrations, and, for
mailboxes that sign in with OAuth 2.0, whether a token is stored and still accepted (it
refreshes an access token when one is due, and says until when it is valid). It sends
nothing, unless asked to send one test message through the outbox.
"""

from __future__ import annotations

import contextlib
import smtplib
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .config import Config
from .errors import ConfigError, LoginRequired, TemporaryError


@dataclass(frozen=True)
class Result:
    what: str
    ok: bool
    detail: str

    def __str__(self) -> str:
        return f"{'OK     ' if self.ok else 'PROBLEM'} {self.what}: {self.detail}"


def check_database(config: Config) -> Result:
    from . import store

    try:
        engine = store.make_engine(config.database)
        try:
            current, head = store.current_revision(engine), store.head_revision()
        finally:
            engine.dispose()
    except ConfigError as exc:
        return Result("database", False, str(exc))
    except Exception as exc:
        return Result("database", False, f"cannot connect: {exc.__class__.__name__}: {str(exc).splitlines()[0]}"
                      " — check the database URL, that the server runs and the user may connect")  # fmt: skip
    if current is None:  # a fresh configuration: nothing to fix, `run` creates it
        return Result("database", True, f"reachable, no schema yet — `sla-gateway run` (or `db upgrade`) "
                      f"creates it ({head})")  # fmt: skip
    if current != head:
        return Result(
            "database",
            False,
            f"schema at {current or 'nothing'}, needs {head} — run `sla-gateway db upgrade`",
        )
    return Result("database", True, f"reachable, schema current ({head})")


def check_oauth(config: Config, tokens: Any) -> list[Result]:
    """Each OAuth account: is a token stored, does the server still accept it, until when."""
    results = []
    for source in tokens.sources():
        what = f"OAuth {source.username} ({source.oauth.provider})"
        try:
            state = source.state()
            if state.stored and state.status == "active":
                source.access_token()  # refreshes it when due: proves the refresh token works
                state = source.state()
        except (LoginRequired, TemporaryError) as exc:
            results.append(Result(what, False, str(exc)))
            continue
        except ConfigError as exc:
            results.append(Result(what, False, "; ".join(str(p) for p in exc.problems)))
            continue
        except Exception as exc:  # the token table cannot be read: the database is not ready
            results.append(Result(what, False, f"cannot read the stored tokens ({exc.__class__.__name__}) "
                                  "— run `sla-gateway db upgrade` and check the database"))  # fmt: skip
            continue
        results.append(Result(what, state.stored and state.status == "active",
                              state.describe(tokens.clock())))  # fmt: skip
    return results


def check_imap(config: Config, tokens: Any = None) -> list[Result]:
    from imapclient.exceptions import LoginError

    from .imap import connect

    results = []
    for inbox in config.inboxes:
        imap = inbox.imap
        if imap is None:
            continue
        what = f"IMAP {inbox.name} ({imap.username} on {imap.host}:{imap.port})"
        source = tokens.for_imap(inbox) if imap.auth == "oauth2" and tokens is not None else None
        try:
            if imap.auth == "oauth2" and source is None:
                raise TemporaryError("the token store is not available")
            client = connect(imap, tokens=source)
        except ConfigError as exc:
            results.append(Result(what, False, str(exc)))
            continue
        except (LoginRequired, TemporaryError) as exc:
            results.append(Result(what, False, f"not signed in: {exc}"))
            continue
        except LoginError:
            if imap.auth == "oauth2":
                results.append(Result(what, False, "the server refused the OAuth token, also a freshly refreshed one "
                                      "— check the app's scopes and that IMAP is enabled for the mailbox (README: OAuth)"))  # fmt: skip
                continue
            results.append(Result(what, False, "the server refused the login — check username and password "
                                  "(Gmail and Fastmail need an app password)"))  # fmt: skip
            continue
        except ssl.SSLError as exc:
            results.append(
                Result(
                    what,
                    False,
                    f"TLS failed ({exc.reason}) — check security = tls/starttls and the port",
                )
            )
            continue
        except OSError as exc:
            results.append(
                Result(
                    what,
                    False,
                    f"cannot connect ({exc.strerror or exc}) — check host, port and firewall",
                )
            )
            continue
        try:
            names = {str(name) for _, _, name in client.list_folders()}
            missing = [f for f in imap.folders if f not in names]
            sent = imap.sent_folder
            if sent is None:
                found = client.find_special_folder(b"\\Sent")
                sent = str(found) if found else None
            if missing:
                results.append(
                    Result(
                        what,
                        False,
                        f"logged in, but no folder {', '.join(missing)} — known: {', '.join(sorted(names))}",
                    )
                )
            else:
                sent_text = (f"Sent folder {sent}" if sent else
                             'no Sent folder found — set sent_folder = "..." or "" for none')  # fmt: skip
                results.append(Result(what, sent is not None or imap.sent_folder == "",
                                      f"logged in; watching {', '.join(imap.folders)}; {sent_text}"))  # fmt: skip
        finally:
            with contextlib.suppress(Exception):  # already closed: nothing to tidy up
                client.logout()
    return results


def check_sending(config: Config, tokens: Any = None) -> Result:
    from .outbox import open_smtp

    send = config.send
    if send.transport == "maildir":
        path = Path(send.path)
        try:
            path.mkdir(parents=True, exist_ok=True)
            probe = path / ".sla-gateway-check"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            return Result("sending (maildir)", False, f"cannot write to {path}: {exc.strerror}")
        return Result("sending (maildir)", True, f"writable: {path.resolve()}")
    what = f"sending (SMTP {send.host}:{send.port}, {send.security})"
    try:
        source = tokens.for_send() if tokens is not None and send.uses_oauth else None
        with open_smtp(send, ssl.create_default_context(), source):
            pass
    except ConfigError as exc:
        return Result(what, False, str(exc))
    except (LoginRequired, TemporaryError) as exc:
        return Result(what, False, f"not signed in: {exc}")
    except smtplib.SMTPAuthenticationError as exc:
        if send.auth == "oauth2":
            return Result(what, False, f"the server refused the OAuth token ({exc.smtp_code}), also a freshly "
                          "refreshed one — check the app's SMTP scope and that SMTP AUTH is enabled for the mailbox")  # fmt: skip
        return Result(what, False, f"login refused ({exc.smtp_code}) — check username and password")
    except (OSError, smtplib.SMTPException) as exc:
        return Result(what, False, f"cannot connect ({exc}) — check host, port and security")
    return Result(what, True, "connected" + (" and logged in" if send.username else ""))


def check_all(config: Config, clock: Callable[[], datetime] | None = None) -> list[Result]:
    from . import store
    from .tokens import Tokens

    results = [check_database(config)]
    if not config.oauth_inboxes and not config.send.uses_oauth:
        return [*results, *check_imap(config), check_sending(config)]
    engine = store.make_engine(config.database)
    try:
        tokens = Tokens(config, engine, clock or (lambda: datetime.now(UTC)))
        return [*results, *check_oauth(config, tokens), *check_imap(config, tokens),
                check_sending(config, tokens)]  # fmt: skip
    finally:
        engine.dispose()
