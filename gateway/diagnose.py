"""`check --connect`: trying every outside connection the configuration names, and saying
in words what is wrong and how to fix it.

Owns: logging in to each inbox's IMAP server (and listing the folders it would watch and
the Sent folder it finds), connecting and authenticating to the outgoing SMTP server (or
checking the maildir is writable), and checking the database and its migrations. It
sends nothing, unless asked to send one test message through the outbox.
"""

from __future__ import annotations

import contextlib
import smtplib
import ssl
from dataclasses import dataclass
from pathlib import Path

from .config import Config
from .errors import ConfigError


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
    if current != head:
        return Result(
            "database",
            False,
            f"schema at {current or 'nothing'}, needs {head} — run `sla-gateway db upgrade`",
        )
    return Result("database", True, f"reachable, schema current ({head})")


def check_imap(config: Config) -> list[Result]:
    from imapclient.exceptions import LoginError

    from .imap import connect

    results = []
    for inbox in config.inboxes:
        imap = inbox.imap
        if imap is None:
            continue
        what = f"IMAP {inbox.name} ({imap.username}@{imap.host}:{imap.port})"
        try:
            client = connect(imap)
        except ConfigError as exc:
            results.append(Result(what, False, str(exc)))
            continue
        except LoginError:
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


def check_sending(config: Config) -> Result:
    from .secrets import read_secret

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
        timeout = send.timeout.total_seconds()
        context = ssl.create_default_context()
        conn = (smtplib.SMTP_SSL(send.host, send.port, timeout=timeout, context=context) if send.security == "tls"
                else smtplib.SMTP(send.host, send.port, timeout=timeout))  # fmt: skip
        with conn:
            conn.ehlo()
            if send.security == "starttls":
                conn.starttls(context=context)
                conn.ehlo()
            if send.username:
                conn.login(send.username, read_secret(send.password, "send"))
    except ConfigError as exc:
        return Result(what, False, str(exc))
    except smtplib.SMTPAuthenticationError as exc:
        return Result(what, False, f"login refused ({exc.smtp_code}) — check username and password")
    except (OSError, smtplib.SMTPException) as exc:
        return Result(what, False, f"cannot connect ({exc}) — check host, port and security")
    return Result(what, True, "connected" + (" and logged in" if send.username else ""))


def check_all(config: Config) -> list[Result]:
    return [check_database(config), *check_imap(config), check_sending(config)]
