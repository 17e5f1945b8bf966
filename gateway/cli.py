"""The `sla-gateway` command: a thin click layer over the library.

Owns: argument parsing, finding and loading the configuration once per invocation,
opening the database engine when a command first needs it and disposing of it when the
command ends (`_State`, on click's context), turning library errors into clean messages
and exit codes, and formatting output.
Exit codes: 0 success; 1 some input could not be used (the rest was processed);
2 bad configuration or bad arguments; 75 a temporary failure (nothing listening, a port
taken, another gateway running). It holds no logic the library lacks and no SQL (what it
reads or writes it asks of the store), and it never prints a traceback for an error that
is the operator's or the sender's.

"Now" comes from `ctx.obj["clock"]` when the caller provides one (tests do), else the
system clock: the one place the real clock is read.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NoReturn

import click

from . import __version__
from .classify import Classifier
from .config import PRIORITIES, WEEKDAYS, Config, InboxConfig, load, locate
from .durations import format_duration, parse_duration
from .errors import AlreadyRunning, ConfigError, GatewayError, InputError, Problem, TemporaryError
from .model import Parsed
from .parse import parse

if TYPE_CHECKING:
    from .store import Engine
from .policy import deadline, decide

Clock = Callable[[], datetime]


def _system_clock() -> datetime:
    return datetime.now(UTC)


class _Group(click.Group):
    """Maps the library's errors to messages and exit codes, for every subcommand."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            for problem in exc.problems:
                click.echo(f"error: {problem}", err=True)
            ctx.exit(2)
        except AlreadyRunning as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(75)  # EX_TEMPFAIL: systemd may try again once the other has stopped
        except TemporaryError as exc:
            click.echo(f"error (temporary, try again): {exc}", err=True)
            ctx.exit(75)  # EX_TEMPFAIL
        except GatewayError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(1)


class _State:
    """What every command shares, made when first asked for: the configuration, and the
    database engine (migrated to the current schema), disposed of by `close` when the
    command ends (the group registers it with click)."""

    def __init__(self, config_path: str | None, clock: Clock) -> None:
        self.config_path = config_path
        self.clock = clock
        self._config: Config | None = None
        self._engine: Engine | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load(locate(self.config_path, os.environ), today=self.clock().date())
        return self._config

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            from . import store

            self._engine = store.make_engine(self.config.database)
            store.upgrade(self._engine)
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


def _state(ctx: click.Context) -> _State:
    state = ctx.find_object(_State)
    assert state is not None
    return state


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    metavar="PATH",
    help="Configuration file (default: $SLA_GATEWAY_CONFIG, ./config/gateway.toml, "
    "/etc/sla-gateway/gateway.toml).",
)
@click.version_option(__version__, prog_name="sla-gateway")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """Acknowledge, classify and measure customer mail to a support inbox."""
    clock = _system_clock
    if isinstance(ctx.obj, dict) and callable(ctx.obj.get("clock")):
        clock = ctx.obj["clock"]
    ctx.obj = _State(config_path, clock)
    ctx.call_on_close(ctx.obj.close)


# ---------------------------------------------------------------------------- check


@cli.command()
@click.option("--connect", is_flag=True, help="Also try the database, IMAP and outgoing mail.")
@click.option(
    "--send-test",
    "send_test",
    metavar="ADDRESS",
    callback=lambda _ctx, _param, value: _address(value, "--send-test"),
    help="With --connect: send one test message there.",
)
@click.option("--schema", is_flag=True, help="Print the configuration's JSON Schema and exit.")
@click.option("--readme-table", is_flag=True, help="Print the README's configuration table and exit.")
@click.pass_context
def check(ctx: click.Context, connect: bool, send_test: str | None, schema: bool, readme_table: bool) -> None:
    """Validate the configuration and its templates, and summarise the policy it publishes."""
    from .secrets import problems as secret_problems
    from .templatecheck import check_templates

    if schema or readme_table:  # from the key declaration alone: no configuration needed
        from . import configdoc

        click.echo(configdoc.schema_text() if schema else configdoc.readme_table())
        return
    if send_test and not connect:
        raise click.UsageError("--send-test sends through the connections --connect tries: give both")
    state = _state(ctx)
    config = state.config
    problems = [*check_templates(config, state.clock()), *secret_problems(config)]
    if problems:
        raise ConfigError(problems)
    click.echo(f"{config.path}: OK")
    for line in policy_summary(config, state.clock()):
        click.echo(line)
    if not connect:
        return
    from .diagnose import check_all

    click.echo("")
    results = check_all(config, state.clock)
    for result in results:
        click.echo(str(result))
    if send_test and all(r.ok for r in results):
        from . import store
        from .outbox import OutboxSender
        from .render import Alert, Renderer, alert_message

        engine = state.engine
        now = state.clock()
        message = alert_message(Renderer(config), send_test, Alert("test"), now=now)
        with store.begin(engine) as conn:
            row_id = store.enqueue(conn, "alert", message, send_test, now)
        sender = OutboxSender(engine, _transport(config, engine, state.clock), state.clock)
        sent = sender.send_one(row_id)  # only this one: the service may be sending beside us
        sender.close()
        click.echo(
            f"{'OK     ' if sent else 'PROBLEM'} test message to {send_test}: {'sent' if sent else 'not sent — see `sla-gateway status`'}"
        )
    if not all(r.ok for r in results):
        ctx.exit(1)


def _address(value: str | None, option: str) -> str | None:
    """An e-mail address given as an option, checked as `init` checks its answers."""
    from .setup import BadAnswer, check_address

    if value is None:
        return None
    try:
        return check_address(value)
    except BadAnswer as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


def _write_out(out: Path, text: str) -> None:
    """Write `--out`, or say in one line why it cannot be written."""
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise click.BadParameter(
            f"cannot write {out}: {exc.strerror or exc}; give a file in a folder that exists "
            "and that you may write to", param_hint="--out",
        ) from None


def _count(n: int, thing: str) -> str:
    """ "1 digest", "2 digests": a count with its noun (the CLI speaks English)."""
    return f"{n} {thing}" if n == 1 else f"{n} {thing}s"


def _words(value: timedelta, length: Literal["short", "long"] = "long") -> str:
    """A duration for people: "30 minutes", "1 hour 30 minutes", "4 days 21 hours" (not
    "1h30m"); `length="short"`: "1 hr 30 min"."""
    from .render import duration_text

    return duration_text(value.total_seconds(), "en", length)


def _format_week(config: Config) -> str:
    groups: list[tuple[list[str], str]] = []
    for day, ranges in zip(WEEKDAYS, config.hours.week, strict=True):
        text = ", ".join(_range_text(r.start, r.end) for r in ranges) if ranges else "closed"
        if groups and groups[-1][1] == text:
            groups[-1][0].append(day)
        else:
            groups.append(([day], text))
    parts = []
    for days, text in groups:
        label = days[0].title() if len(days) == 1 else f"{days[0].title()}–{days[-1].title()}"
        parts.append(f"{label} {text}")
    return "; ".join(parts)


def _range_text(start: int, end: int) -> str:
    def hhmm(m: int) -> str:
        return f"{m // 60:02d}:{m % 60:02d}"

    if (start, end) == (0, 24 * 60):
        return "around the clock"
    if end > 24 * 60:
        return f"{hhmm(start)}–{hhmm(end - 24 * 60)} (next day)"
    return f"{hhmm(start)}–{hhmm(end)}"


def policy_summary(config: Config, now: datetime) -> list[str]:
    """The human summary `check` prints: what the configuration promises."""
    cal = config.calendar
    lines = []
    for inbox in config.inboxes:
        aliases = f" (also {', '.join(inbox.aliases)})" if inbox.aliases else ""
        signer = f' as "{inbox.from_name}"' if inbox.from_name else ""
        lines.append(
            f"inbox {inbox.name}: {inbox.address}{aliases}{signer}, language {inbox.language}"
        )
    lines.append(f"time zone: {config.hours.timezone}")
    lines.append(f"opening hours: {_format_week(config)}")
    lines.append(f"public holidays: {config.hours.holidays or 'none'}")
    today = cal.local(now).date()
    upcoming = []
    for offset in range(0, 90):
        day = today + timedelta(days=offset)
        reason = cal.closure(day)
        if reason and config.hours.week[day.weekday()]:
            upcoming.append(f"{day.isoformat()} {reason}")
    lines.append("closed in the next 90 days: " + ("; ".join(upcoming) if upcoming else "none"))
    for season in config.hours.seasons:
        notice = f' — "{season.notice}"' if season.notice else ""
        lines.append(
            f"season {season.name}: {season.start}..{season.end}, windows ×{season.stretch:g}{notice}"
        )
    lines.append("response windows (business time unless 24/7):")
    for p in config.priorities:
        nxt = (
            f", next reply {_words(p.next_reply)}" if p.next_reply != p.first_reply else ""
        )
        if p.resolve is not None:
            nxt += f", resolved within {_words(p.resolve)}"
        if p.clock == "24/7":
            nxt += " (24/7: every hour counts)"
        what = []
        if p.keywords:
            what.append("keywords: " + ", ".join(p.keywords))
        if p.patterns:
            what.append("patterns: " + ", ".join(x.pattern for x in p.patterns))
        if p.name == "normal":
            what.append("the default")
        lines.append(
            f"  {p.name:<7} first reply {_words(p.first_reply)}{nxt}; " + "; ".join(what)
        )
    if config.vip.senders:
        lines.append(
            f"VIP senders ({', '.join(config.vip.senders)}): at least {config.vip.min_priority}"
        )
    t = config.tracking
    follow = [f"resolved after {_words(t.close_after)} (real time) without word from the customer"]
    if t.remind_after:
        follow.append("reminders after " + ", ".join(_words(r) for r in t.remind_after) + " of waiting")
    if t.close_notice:
        follow.append("a closing notice")
    if t.notify_customer_on_breach:
        follow.append("breach notices" + (f" with {len(t.remedies)} remedies" if t.remedies else ""))
    lines.append("follow-through: " + "; ".join(follow))
    example = datetime.combine(today, datetime.min.time(), cal.tz).replace(hour=16)
    d = deadline(cal, config.default_priority, example)
    lines.append(
        f"example: normal mail received {example:%a %Y-%m-%d %H:%M} is due {d.due_at:%a %Y-%m-%d %H:%M %Z}"
    )
    lines.append(f"database: {_redact(config.database)}")
    return lines


def _redact(url: str) -> str:
    from .store import display_url

    return display_url(url)


# ---------------------------------------------------------------------------- due


def _parse_instant(text: str, config: Config) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip().replace(" ", "T", 1))
    except ValueError:
        raise click.BadParameter(
            f'"{text.strip()}" is not an ISO 8601 time such as 2026-11-23T10:00+01:00',
            param_hint="--at",
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=config.calendar.tz)  # shop-local when no offset is given
    if not 1970 <= value.year <= 2200:
        raise click.BadParameter(
            f'"{text.strip()}" is outside the years 1970-2200', param_hint="--at"
        )
    return value


def _instants(values: Iterable[str]) -> Iterator[str]:
    for value in values:
        if value == "-":
            for line in sys.stdin:
                if line.strip():
                    yield line
        else:
            yield value


@cli.command()
@click.option(
    "--priority", "-p", "priority_name", required=True, help="urgent, high, normal or low."
)
@click.option(
    "--at",
    "at_values",
    multiple=True,
    required=True,
    metavar="ISO8601",
    help="Receipt time (repeatable); '-' reads one per line from stdin. No offset = shop time.",
)
@click.option("--next-reply", is_flag=True, help="Use the next-reply window instead of the first.")
@click.pass_context
def due(
    ctx: click.Context, priority_name: str, at_values: tuple[str, ...], next_reply: bool
) -> None:
    """Print the reply deadline for mail received at each --at, one per line."""
    config = _state(ctx).config
    known = [p.name for p in config.priorities]
    if priority_name not in known:
        raise click.BadParameter(
            f'"{priority_name}" is not one of {", ".join(known)}', param_hint="--priority"
        )
    priority = config.priority(priority_name)
    out = sys.stdout
    for text in _instants(at_values):
        received = _parse_instant(text, config)
        out.write(
            deadline(config.clock_for(priority.name), priority, received, next_reply=next_reply).due_at.isoformat()
        )
        out.write("\n")


# ---------------------------------------------------------------------------- inspect


@cli.command()
@click.option(
    "--at", "at_text", metavar="ISO8601", help="Treat every message as received at this time."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def inspect(
    ctx: click.Context, at_text: str | None, as_json: bool, files: tuple[Path, ...]
) -> None:
    """Dry run on saved messages: parse, classify, compute the deadline, explain why."""
    state = _state(ctx)
    config = state.config
    classifier = Classifier.from_config(config)
    at = _parse_instant(at_text, config) if at_text else None
    failures = 0
    for path in files:
        try:
            result = inspect_file(path, config, classifier, at)
        except (OSError, InputError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        except Exception as exc:  # our bug, not the file's: say so, go on with the rest
            reason = f"internal error, please report it: {type(exc).__name__}: {exc}"
        else:
            if as_json:
                click.echo(json.dumps(result, ensure_ascii=False))
            else:
                _print_inspection(result)
            continue
        failures += 1
        if as_json:
            click.echo(json.dumps({"file": str(path), "error": reason}, ensure_ascii=False))
        else:
            click.echo(f"{path}\n  error: {reason}\n")
    if failures:
        ctx.exit(1)


def inspect_file(
    path: Path, config: Config, classifier: Classifier, at: datetime | None
) -> dict[str, Any]:
    raw = path.read_bytes()
    parsed = parse(raw)
    if at is not None:
        received, received_from = at, "--at"
    elif parsed.date is not None:
        received, received_from = parsed.date, "Date header"
    else:
        received = datetime.fromtimestamp(path.stat().st_mtime, UTC)
        received_from = "file time (no usable Date header)"
    inbox = pick_inbox(config, parsed)
    decision = decide(
        parsed,
        config=config,
        inbox=inbox,
        classifier=classifier,
        received_at=received,
        return_path=parsed.return_path,
    )
    classification, d = decision.classification, decision.deadline
    return {
        "file": str(path),
        "message_id": parsed.message_id,
        "from": parsed.sender.addr if parsed.sender else None,
        "subject": parsed.subject,
        "received_at": config.calendar.local(received).isoformat(),
        "received_from": received_from,
        "priority": classification.priority,
        "matched": [str(m) for m in classification.matches],
        "window": format_duration(d.window),
        "stretch": d.stretch,
        "season": d.season,
        "due": d.due_at.isoformat(),
        "acknowledge": decision.acknowledge,
        "skip_rule": decision.skip.rule if decision.skip else None,
        "skip_reason": decision.skip.reason if decision.skip else None,
        "ack_to": decision.ack_to,
        "customer": decision.customer,
        "inbox": inbox.name,
        "defects": list(parsed.defects),
    }


def pick_inbox(config: Config, parsed: Parsed) -> InboxConfig:
    """The inbox a message was written to (To, then Cc), else the first one."""
    return config.inbox_among(a.addr for a in (*parsed.to, *parsed.cc))


def _print_inspection(r: dict[str, Any]) -> None:
    click.echo(r["file"])
    click.echo(f"  message-id: {r['message_id'] or '(none)'}")
    click.echo(f"  from:       {r['from'] or '(none)'}")
    click.echo(f"  subject:    {r['subject']}")
    click.echo(f"  received:   {r['received_at']} ({r['received_from']})")
    why = "; ".join(r["matched"]) or "nothing matched (default)"
    click.echo(f"  priority:   {r['priority']} — {why}")
    stretch = f" × {r['stretch']:g} ({r['season']})" if r["season"] else ""
    window = _words(parse_duration(r["window"]))
    click.echo(f"  due:        {r['due']} ({window} of business time{stretch})")
    if r["acknowledge"]:
        click.echo(f"  acknowledge: yes, to {r['ack_to']}")
    else:
        click.echo(f"  acknowledge: no — {r['skip_rule']}: {r['skip_reason']}")
    if r["defects"]:
        click.echo(f"  defects:    {', '.join(r['defects'])}")
    click.echo("")


# ---------------------------------------------------------------------------- run


def setup_logging(log_format: str) -> None:
    """One line per event on stderr (journald picks it up): key=value or JSON."""
    import logging

    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":

        class _Json(logging.Formatter):
            def format(self, record: logging.LogRecord) -> str:
                entry = {
                    "time": self.formatTime(record),
                    "level": record.levelname,
                    "logger": record.name,
                    "message": record.getMessage(),
                }
                if record.exc_info:
                    entry["exception"] = self.formatException(record.exc_info)
                return json.dumps(entry, ensure_ascii=False)

        handler.setFormatter(_Json())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s level=%(levelname)s logger=%(name)s %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd's chatter
    logging.getLogger("alembic").setLevel(logging.WARNING)  # each migration step, its plugins


@cli.command()
@click.option(
    "--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.pass_context
def run(ctx: click.Context, log_format: str) -> None:
    """Run the gateway: listen, poll, acknowledge, send — until stopped (SIGTERM/Ctrl-C);
    SIGHUP reloads the configuration and templates."""
    import signal
    import time

    from .secrets import problems as secret_problems
    from .service import Service

    state = _state(ctx)
    config = state.config
    missing = secret_problems(config)  # now, not when a poller or the sender first needs one
    if missing:
        raise ConfigError(missing)
    setup_logging(log_format)
    if config.listen is None and not any(i.imap for i in config.inboxes):
        click.echo(
            "warning: neither [listen] nor any [inbox.imap] is configured; nothing will arrive",
            err=True,
        )
    service = Service(config, clock=state.clock)
    stopping: list[int] = []  # a signal handler must take no lock: it may interrupt one
    reloads: list[int] = []  # SIGHUP (`systemctl reload`): read the configuration again

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda number, _frame: stopping.append(number))
    signal.signal(signal.SIGHUP, lambda number, _frame: reloads.append(number))
    try:
        service.start()
    except OSError as exc:  # the listener's address: taken, not ours, or a privileged port
        service.close()
        if config.listen is None or exc.errno not in LISTEN_ERRORS:
            raise
        raise _listen_error(config, exc) from None
    try:
        if config.listen is not None:
            click.echo(
                f"sla-gateway listening on {config.listen.host}:{config.listen.port}; "
                f"outgoing mail: {config.send.transport}"
                + (f" ({config.send.path})" if config.send.transport == "maildir" else ""),
                err=True,
            )
        while not stopping:
            if reloads:
                reloads.clear()
                service.reload()
            time.sleep(0.2)
    finally:
        service.close()


LISTEN_ERRORS = {errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES}


def _listen_error(config: Config, exc: OSError) -> GatewayError:
    """`run` could not listen: one line saying why and what to do."""
    assert config.listen is not None
    where = f"{config.listen.host}:{config.listen.port}"
    if exc.errno == errno.EADDRINUSE:  # it may pass: the other program may be stopping
        return TemporaryError(f"cannot listen on {where}: another program (or another sla-gateway) "
                              "is already listening there — stop it, or set another port in [listen]")  # fmt: skip
    if exc.errno == errno.EACCES:
        why = (f"port {config.listen.port} needs privileges" if config.listen.port < 1024
               else "permission denied")  # fmt: skip
        return ConfigError([Problem(str(config.path), "listen.port", f"cannot listen on {where}: {why}",
                                    "use a port from 1024 up (2525), or grant CAP_NET_BIND_SERVICE (see README)")])  # fmt: skip
    return ConfigError([Problem(str(config.path), "listen.host", f"cannot listen on {where}: "
                                "the address is not one of this machine's", 'use "127.0.0.1" or "0.0.0.0"')])  # fmt: skip


@cli.command()
@click.option("--host", default=None, help="Listener host (default: [listen] host).")
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="Listener port (default: [listen] port).")  # fmt: skip
@click.option(
    "--from", "sender", default=None, help="Envelope sender (default: the message's From)."
)
@click.option(
    "--to", "recipient", default=None, help="Envelope recipient (default: the first inbox address)."
)
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path)
)
@click.pass_context
def deliver(
    ctx: click.Context,
    host: str | None,
    port: int | None,
    sender: str | None,
    recipient: str | None,
    files: tuple[Path, ...],
) -> None:
    """Deliver saved .eml files to the running gateway's SMTP listener (for trying it out)."""
    import smtplib

    from .outbox import to_crlf

    config = _state(ctx).config
    listen = config.listen
    host = host or (listen.host if listen else "127.0.0.1")
    port = port or (listen.port if listen else 2525)
    to = recipient or config.inboxes[0].address
    failures = 0
    try:
        client = smtplib.SMTP(host, port, timeout=30)
    except (OSError, smtplib.SMTPException) as exc:
        reason = (exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)) or type(exc).__name__
        raise TemporaryError(f"cannot deliver to {host}:{port} ({reason}): is the gateway running? "
                             "Start it with `sla-gateway run` (its [listen] section), or pass --host/--port") from None  # fmt: skip
    with client:
        for path in files:
            raw = path.read_bytes()
            envelope_from = sender
            if envelope_from is None:
                parsed = None
                with contextlib.suppress(InputError):
                    parsed = parse(raw)
                envelope_from = (
                    parsed.return_path
                    if parsed and parsed.return_path is not None
                    else (parsed.sender.addr if parsed and parsed.sender else "")
                )
            try:
                client.sendmail(envelope_from, [to], to_crlf(raw))
                click.echo(f"{path}: delivered")
            except smtplib.SMTPResponseException as exc:
                failures += 1
                error = exc.smtp_error
                text = error.decode(errors="replace") if isinstance(error, bytes) else str(error)
                click.echo(f"{path}: refused: {exc.smtp_code} {text}")
            except smtplib.SMTPRecipientsRefused as exc:
                failures += 1
                click.echo(f"{path}: refused: {exc.recipients}")
            except (OSError, smtplib.SMTPServerDisconnected) as exc:
                raise TemporaryError(f"{path}: not delivered, the connection to {host}:{port} was lost ({exc}); "
                                     "deliver it and the files after it again") from None  # fmt: skip
    if failures:
        ctx.exit(1)


# ---------------------------------------------------------------------------- tickets


def _transport(config: Config, engine: Any, clock: Clock) -> Any:
    """The configured outgoing transport, with OAuth sign-in when [send] uses it."""
    from .outbox import make_transport
    from .tokens import Tokens

    return make_transport(config.send, tokens=Tokens(config, engine, clock))


@cli.command()
@click.option("--open", "only_open", is_flag=True, help="Only conversations waiting for the team.")
@click.option(
    "--breached", "only_breached", is_flag=True, help="Only conversations whose promise was missed."
)
@click.option(
    "--at-risk",
    "only_at_risk",
    is_flag=True,
    help="Only open conversations past their warning point but not yet due, soonest first.",
)
@click.option(
    "--since", "since_text", metavar="DATE", help="Received on or after this date (shop time)."
)
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per line (with REFERENCE: one object with its timeline).")  # fmt: skip
@click.argument("reference", required=False)
@click.pass_context
def tickets(ctx: click.Context, only_open: bool, only_breached: bool, only_at_risk: bool,
            since_text: str | None, as_json: bool, reference: str | None) -> None:  # fmt: skip
    """List conversations with their promise, first reply and state; with REFERENCE
    (e.g. SHOP-1042), that conversation's timeline."""
    from .reports import conversation_view, ticket_rows

    state = _state(ctx)
    config = state.config
    if reference is not None:
        if only_open or only_breached or only_at_risk or since_text:
            raise click.UsageError("--open, --breached, --at-risk and --since list conversations; "
                                   "give them without a REFERENCE")  # fmt: skip
        view = conversation_view(state.engine, config, reference, state.clock())
        if view is None:
            click.echo(f"error: no conversation {reference.strip().upper()}; "
                       "`sla-gateway tickets` lists them", err=True)  # fmt: skip
            ctx.exit(2)
        assert view is not None
        if as_json:
            click.echo(json.dumps(view, ensure_ascii=False))
        else:
            _print_conversation(view, config)
        return
    day = _day_option(since_text, "--since")
    since = datetime.combine(day, datetime.min.time(), config.calendar.tz) if day else None
    engine = state.engine
    rows = ticket_rows(engine, config, state.clock(), since=since, only_open=only_open,
                       only_breached=only_breached, only_at_risk=only_at_risk)  # fmt: skip
    if as_json:
        for row in rows:
            click.echo(json.dumps(row, ensure_ascii=False))
        return
    _print_tickets(rows, config)


@cli.command("set")
@click.argument("reference")
@click.option("--resolved", is_flag=True, help="The case is settled.")
@click.option("--pending", is_flag=True, help="Waiting for the customer: the resolution clock pauses.")
@click.option("--open", "reopen", is_flag=True, help="Reopen it.")
@click.option("--priority", type=click.Choice(PRIORITIES), help="Set the priority (recorded as the team's).")
@click.option("--note", metavar="TEXT", help="A note for the conversation's timeline.")
@click.pass_context
def set_(ctx: click.Context, reference: str, resolved: bool, pending: bool, reopen: bool,
         priority: str | None, note: str | None) -> None:  # fmt: skip
    """Mark conversation REFERENCE (e.g. SHOP-1042) as the mail client's plus-addresses
    do: --resolved, --pending, --open, --priority; with a --note for its timeline."""
    from .conversations import set_by_reference
    from .reports import in_words

    states = [name for name, given in (("resolved", resolved), ("pending", pending), ("open", reopen)) if given]
    if len(states) > 1:
        raise click.UsageError("give only one of --resolved, --pending and --open")
    commands = [*states, *([priority] if priority else [])]
    if not commands and not note:
        raise click.UsageError("nothing to set: give --resolved, --pending, --open, --priority or --note")
    state = _state(ctx)
    ref = reference.strip().upper()
    by = _who()
    done = set_by_reference(state.engine, state.config, reference, commands, by=by, note=note,
                            now=state.clock())  # fmt: skip
    if done is None:
        click.echo(f"error: no conversation {ref}; `sla-gateway tickets` lists them", err=True)
        ctx.exit(2)
    assert done is not None
    for result in done:
        command, change = result["command"], result.get("change")
        if command == "note":
            line = f"{ref}: note added"
        elif change == "none":
            line = f"{ref}: no change, already {_state_words(result['state'])}"
        elif command in PRIORITIES:
            line = f"{ref}: priority {result.get('from', command)} → {command}"
            if result.get("due_at"):
                line += f", reply due {_shop_time(state.config, result['due_at'])}"
        else:
            line = f"{ref}: {_state_words(result.get('was', ''))} → {_state_words(result['state'])}"
        if change not in (None, "none", "confirmed"):
            line += f" ({change})"
        if "resolution_business_seconds" in result:
            line += f"; resolved after {in_words(result['resolution_business_seconds'])} of business time"
        if note and command != "note":
            line += "; note added"
        click.echo(line)


def _state_words(state: str) -> str:
    return state.replace("_", " ")


def terminal_width() -> int:
    """The terminal's width: $COLUMNS when set, else the terminal's; 80 when output is not
    a terminal (a pipe, a file)."""
    import shutil

    return max(40, shutil.get_terminal_size((80, 24)).columns)


def shorten(text: str, width: int) -> str:
    """`text` in at most `width` characters: cut after a word (or an address's "@" or
    "."), never inside one, and marked with "…"."""
    if len(text) <= width:
        return text
    room = text[: max(width - 1, 0)]
    cut = max(room.rfind(" "), room.rfind("@") + 1, room.rfind(".") + 1)
    return (room[:cut] if cut > 0 else "").rstrip() + "…"


def _print_tickets(rows: list[dict[str, Any]], config: Config) -> None:
    from rich.console import Console
    from rich.table import Table

    if not rows:
        click.echo("no conversations to show")
        return

    names = {
        "awaiting_team": "awaiting team",
        "pending": "pending (cust.)",
        "breached": "BREACHED",
    }
    cells = []
    for row in rows:
        due = datetime.fromisoformat(row["open_due_at"] or row["due_at"]).astimezone(
            config.calendar.tz
        )
        seconds = row["first_reply_business_seconds"]
        first = _words(timedelta(seconds=seconds), "short") if seconds is not None else "—"
        state_text = names.get(row["state"], row["state"])
        if (row["breached"] and row["state"] != "breached") or row["resolution_breached"]:
            state_text += " !"
        cells.append([row["reference"], row["priority"], state_text, f"{due:%a %d %b %H:%M}", first,
                      row["customer"] or "", row["subject"] or ""])  # fmt: skip
    # The first five columns are never cut; customer and subject share what is left (the
    # customer at most 2/5 of it), the customer only when both can be read, each text cut
    # after a word. Narrower than the five columns, lines are as long as they need to be.
    headers = ["Ref", "Pri", "State", "Due", "1st", "Customer", "Subject"]
    width = terminal_width()
    sizes = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers[:5])]
    room = width - sum(sizes) - 2 * len(sizes)  # two spaces before each further column
    longest = max([len(headers[5]), *(len(c[5]) for c in cells)])
    customer = min(longest, room * 2 // 5) if room >= 40 else 0
    subject = room - customer - (2 if customer else 0) if room >= 12 else 0
    subject = min(subject, max([len(headers[6]), *(len(c[6]) for c in cells)]))
    shown = [*headers[:5], *(["Customer"] if customer else []), *(["Subject"] if subject else [])]
    sizes += [n for n in (customer, subject) if n]
    console = Console(width=max(width, sum(sizes) + 2 * (len(sizes) - 1)))
    table = Table(box=None, pad_edge=False, show_edge=False)
    for header, size in zip(shown, sizes, strict=True):
        table.add_column(header, no_wrap=True, width=size, justify="right" if header == "1st" else "left")
    for c in cells:
        table.add_row(*c[:5], *([shorten(c[5], customer)] if customer else []),
                      *([shorten(c[6], subject)] if subject else []))  # fmt: skip
    console.print(table)
    if not rows:
        console.print("no conversations")


def _print_conversation(view: dict[str, Any], config: Config) -> None:
    """`tickets REF`: a few lines about the conversation, then its timeline."""
    from .reports import in_words

    def when(text: str | None) -> str:
        if text is None:
            return "—"
        return f"{datetime.fromisoformat(text).astimezone(config.calendar.tz):%a %d %b %Y %H:%M}"

    click.echo(f"{view['reference']}  {view['subject']}")
    click.echo(f"  customer {view['customer']}; priority {view['priority']} (set by {view['priority_set_by']}); "
               f"state {view['state']}")  # fmt: skip
    reply = (f"first reply {when(view['first_reply_at'])}, {in_words(view['first_reply_business_seconds'])} "
             "of business time" if view["first_reply_at"] else f"first reply due {when(view['due_at'])}")  # fmt: skip
    click.echo(f"  received {when(view['received_at'])}; {reply}" + (" (missed)" if view["breached"] else ""))
    target = view["resolve_target_seconds"]
    spent = in_words(view["resolution_business_seconds"])
    wait = in_words(view["customer_wait_business_seconds"])
    if view["resolved_at"]:
        line = f"  resolved {when(view['resolved_at'])} by {view['resolved_by'] or '—'}: {spent} of business time"
    else:
        line = f"  open: {spent} of business time so far"
        if view["resolve_due_at"]:
            line += f", to be resolved by {when(view['resolve_due_at'])}"
    if target is not None:
        line += f" (target {in_words(target)}" + (", missed)" if view["resolution_breached"] else ")")
    click.echo(f"{line}; {wait} waiting for the customer")
    click.echo("")
    for entry in view["timeline"]:
        click.echo(f"  {when(entry['at'])}  {entry['text']}")
    if not view["timeline"]:
        click.echo("  (nothing recorded)")


@cli.command()
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.pass_context
def replay(ctx: click.Context, source: Path) -> None:
    """Feed saved mail (mbox file, maildir or folder of .eml) through the pipeline, sending
    nothing, to measure past performance. Safe to repeat."""
    from rich.progress import Progress

    from .replay import replay as run_replay
    from .reports import replay_counts

    state = _state(ctx)
    config = state.config
    engine = state.engine
    with Progress(transient=True, disable=not sys.stderr.isatty()) as progress:
        task = progress.add_task("replaying", total=None)

        def tick(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        summary = run_replay(config, engine, source, now=state.clock(), progress=tick)
    if not summary.read:
        kind = "folder" if source.is_dir() else "file"
        raise click.BadParameter(f"{source}: this {kind} holds no mail; give an mbox file (its messages "
                                 "start with a 'From ' line), a maildir or a folder of .eml files",
                                 param_hint="SOURCE")  # fmt: skip
    counts = replay_counts(engine)
    click.echo(
        f"{summary.read} messages read, {summary.new} new, {summary.unreadable} set aside as unreadable"
    )
    click.echo(f"{counts['conversations']} conversations, {counts['team_replies']} team replies "
               f"({counts['unmatched']} matched to no conversation), {counts['machine']} machine messages")  # fmt: skip


# ---------------------------------------------------------------------------- notice


@cli.group(cls=_Group, invoke_without_command=True)
@click.pass_context
def notice(ctx: click.Context) -> None:
    """The current exception told to customers in acknowledgments and breach notices
    ("Our courier is on strike; replies are slower this week"). Without a subcommand:
    show the one in force."""
    if ctx.invoked_subcommand is not None:
        return
    from .notices import current

    state = _state(ctx)
    found = current(state.engine, state.clock())
    if found is None:
        click.echo("no notice: acknowledgments and breach notices carry none")
        return
    cal = state.config.calendar
    until = f"until {cal.local(found.until):%a %d %b %Y %H:%M %Z}" if found.until else "until cleared"
    click.echo(f"{found.text}\n  set {cal.local(found.set_at):%a %d %b %Y %H:%M %Z} by {found.set_by}, {until}")


def _who() -> str:
    return "cli:" + (os.environ.get("SUDO_USER") or os.environ.get("USER") or "owner")


@notice.command("set")
@click.argument("text")
@click.option("--until", "until_text", metavar="DATE", help="Last day (shop-local) or moment; default: until cleared.")
@click.pass_context
def notice_set(ctx: click.Context, text: str, until_text: str | None) -> None:
    """Tell customers TEXT in every acknowledgment and breach notice from now on."""
    from .notices import NoticeError, clean_text, parse_until, set_notice

    state = _state(ctx)
    now = state.clock()
    try:
        cleaned = clean_text(text)
        until = parse_until(until_text, state.config.calendar.tz, now) if until_text is not None else None
    except NoticeError as exc:
        click.echo(f"error: {exc}", err=True)
        ctx.exit(2)
    set_notice(state.engine, cleaned, until, now, _who())
    shown = f"until {state.config.calendar.local(until):%a %d %b %Y %H:%M %Z}" if until else "until `notice clear`"
    click.echo(f"notice set, {shown}: {cleaned}")


@notice.command("clear")
@click.pass_context
def notice_clear(ctx: click.Context) -> None:
    """End the current notice now."""
    from .notices import clear_notice

    state = _state(ctx)
    click.echo("notice cleared" if clear_notice(state.engine, state.clock(), _who()) else "no notice was set")


# ---------------------------------------------------------------------------- reports


def _day_option(text: str | None, name: str) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f'"{text}" is not a date like 2026-11-23', param_hint=name
        ) from None


@cli.command()
@click.option(
    "--since", "since_text", metavar="DATE", help="First day (shop time); default: 30 days ago."
)
@click.option("--until", "until_text", metavar="DATE", help="Last day, included; default: today.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@click.pass_context
def report(
    ctx: click.Context, since_text: str | None, until_text: str | None, as_json: bool
) -> None:
    """Compliance, percentiles and intake figures for a period."""
    from .reports import report as build_report

    state = _state(ctx)
    config = state.config
    now = state.clock()
    today = config.calendar.local(now).date()
    until = _day_option(until_text, "--until") or today
    since = _day_option(since_text, "--since") or (until - timedelta(days=29))
    if since > until:
        raise click.BadParameter("--since is after --until", param_hint="--since")
    tz = config.calendar.tz
    start = datetime.combine(since, datetime.min.time(), tz)
    end = datetime.combine(until + timedelta(days=1), datetime.min.time(), tz)
    engine = state.engine
    figures = build_report(engine, config, start, end, now)
    if as_json:
        click.echo(json.dumps(figures, ensure_ascii=False))
        return
    _print_report(figures, since, until)


def _print_report(figures: dict[str, Any], since: date, until: date) -> None:
    from rich.console import Console
    from rich.table import Table

    from .render import duration_text

    console = Console(width=terminal_width())

    def pct(value: float | None) -> str:
        return "—" if value is None else f"{value:.0%}"

    on_time = ("no first reply was due" if figures["compliance"] is None
               else f"{pct(figures['compliance'])} of first replies on time")  # fmt: skip
    console.print(f"{since} – {until}: {_count(figures['conversations'], 'conversation')}, {on_time}, "
                  f"{figures['acknowledged']} acknowledged")  # fmt: skip
    if not figures["priorities"]:
        return  # no table of nothing
    headers = ("Priority", "Target", "Count", "Met", "Missed", "On time", "Median", "80%", "90%")
    rows = [[name, duration_text(f["target_seconds"], "en"), str(f["count"]), str(f["met"]), str(f["breached"]),
             pct(f["compliance"]), duration_text(f["p50_seconds"], "en"), duration_text(f["p80_seconds"], "en"),
             duration_text(f["p90_seconds"], "en")] for name, f in figures["priorities"].items()]  # fmt: skip
    # Every cell whole: narrower than the table (69 columns), its lines grow past the edge
    # rather than cut a word; the sentences around it wrap between words.
    widths = [max(len(text) for text in (h, *(r[i] for r in rows))) for i, h in enumerate(headers)]
    table = Table(box=None, pad_edge=False)
    for header in headers:
        table.add_column(header, justify="left" if header == "Priority" else "right", no_wrap=True)
    for row in rows:
        table.add_row(*row)
    Console(width=max(console.width, sum(widths) + 2 * (len(widths) - 1))).print(table)
    skipped = figures["not_acknowledged"]
    if skipped:
        console.print(
            "not acknowledged: "
            + ", ".join(f"{n} {rule}" for rule, n in sorted(skipped.items(), key=lambda kv: -kv[1]))
        )
    r = figures["resolution"]
    if r["count"]:
        console.print(f"resolution: {pct(r['compliance'])} of {r['count']} cases within their target "
                      f"({r['met']} met, {r['breached']} missed); median {duration_text(r['p50_seconds'], 'en')}, "
                      f"80% {duration_text(r['p80_seconds'], 'en')}, 90% {duration_text(r['p90_seconds'], 'en')}")  # fmt: skip
        console.print("  by priority: " + ", ".join(f"{name} {pct(f['compliance'])} of {f['count']}"
                                                   for name, f in r["priorities"].items()))  # fmt: skip
    else:
        console.print("resolution: no case with a resolution target was resolved or overdue")
    b = figures["backlog"]
    console.print(f"backlog: {b['open_at_start']} open at the start, {b['opened']} opened, "
                  f"{b['resolved']} resolved, {b['open_at_end']} open at the end")  # fmt: skip


@cli.command()
@click.option(
    "--date",
    "day_text",
    metavar="DATE",
    help="The day to report on (default: the previous business day).",
)
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the HTML to this file.",
)
@click.option("--text", "as_text", is_flag=True, help="Print the plain-text version.")
@click.option(
    "--send", is_flag=True, help="Send it to [digest] to through the outbox (once per day)."
)
@click.pass_context
def digest(
    ctx: click.Context, day_text: str | None, out: Path | None, as_text: bool, send: bool
) -> None:
    """Preview (HTML or text) or send the owner's daily digest."""
    from .digest import previous_business_day
    from .pipeline import Pipeline
    from .render import Renderer, render_digest
    from .reports import digest_inputs
    from .scheduler import Scheduler

    state = _state(ctx)
    config = state.config
    now = state.clock()
    day = _day_option(day_text, "--date") or previous_business_day(
        config.calendar, config.calendar.local(now).date()
    )
    engine = state.engine
    if send:
        pipeline = Pipeline(config, engine, state.clock)
        queued = Scheduler(config, engine, state.clock, pipeline).daily_digest(
            now, force_day=day
        )
        if not queued:
            click.echo(
                f"the digest for {day} was already sent (or skipped as empty); not sending it again"
            )
            return
        from .outbox import OutboxSender
        from .reports import service_running

        who = ", ".join(config.digest.to or (config.inboxes[0].address,))
        if service_running(engine, now):  # one sender at a time: the service sends it
            click.echo(f"digest for {day} queued for {who}; the running service sends it")
            return
        sender = OutboxSender(engine, _transport(config, engine, state.clock), state.clock,
                              give_up_after=config.send.give_up_after)  # fmt: skip
        sender.send_due(kinds=("digest",))
        sender.close()
        click.echo(f"digest for {day} queued for {who}")
        return
    html, text, _ = render_digest(Renderer(config), digest_inputs(engine, config, day, now))
    if as_text:
        click.echo(text, nl=False)
    elif out is not None:
        _write_out(out, html)
        click.echo(f"wrote {out}")
    else:
        click.echo(html, nl=False)


# ---------------------------------------------------------------------------- operations


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Is the service running; queues; set-aside messages; IMAP syncs; the last hour."""
    from .reports import status as read_status

    state = _state(ctx)
    now = state.clock()
    engine = state.engine
    info = read_status(engine, now)
    info["oauth"] = _oauth_status(state.config, engine, state.clock)
    info["set_aside"] = _set_aside_status(state.config, engine)
    info["backlog"] = _backlog_status(state.config, engine, now)
    if as_json:
        click.echo(json.dumps(info))
        return
    config = state.config
    if info["running"]:
        click.echo(f"service: running (pid {info['pid']} on {info['host']}, "
                   f"since {_shop_time(config, info['started_at'])})")  # fmt: skip
    elif info["last_heartbeat"]:
        click.echo(f"service: NOT running (last seen {_shop_time(config, info['last_heartbeat'])})")
    else:
        click.echo("service: NOT running")
    click.echo(f"outbox: {info['outbox_pending']} pending, {info['outbox_failed']} failed"
               + (" — fix the cause, then run `sla-gateway retry`" if info["outbox_failed"] else ""))  # fmt: skip
    if info["backlog"]["pending"]:
        click.echo(f"sending: {info['backlog']['text']}")
    click.echo(f"messages: {info['messages_waiting']} waiting, {info['messages_set_aside']} set aside"
               + (" — see `sla-gateway retry`" if info["messages_set_aside"] else ""))  # fmt: skip
    for line in _set_aside_lines(state.config, info["set_aside"], info["messages_set_aside"]):
        click.echo(line)
    for folder in info["imap"]:
        click.echo(
            f"imap {folder['inbox']}/{folder['folder']}: last sync {_shop_time(config, folder['synced_at'])} "
            f"(uid {folder['last_uid']})"
        )
    for account in info["oauth"]:
        click.echo(f"oauth {account['username']}: {account['text']}")
    last = info["last_hour"]
    click.echo(f"last hour: {_count(last['acknowledgments'], 'acknowledgment')}, "
               f"{_count(last['alerts'], 'alert')}, {_count(last['breach_notices'], 'breach notice')}, "
               f"{_count(last['reminders'], 'reminder')}, {_count(last['closing_notices'], 'closing notice')}, "
               f"{_count(last['digests'], 'digest')}")  # fmt: skip


def _shop_time(config: Config, iso: str | None) -> str:
    """A moment `status` prints: the shop's time zone, whole seconds, its zone's name."""
    if not iso:
        return "?"
    moment = datetime.fromisoformat(iso)
    if moment.tzinfo is None:  # stored as UTC
        moment = moment.replace(tzinfo=UTC)
    return f"{config.calendar.local(moment).replace(microsecond=0):%Y-%m-%d %H:%M:%S %Z}"


STATUS_SET_ASIDE_SHOWN = 5  # set-aside messages `status` prints; --json lists more


def _set_aside_status(config: Config, engine: Any) -> list[dict[str, Any]]:
    """`status --json`'s "set_aside": the oldest set-aside messages with their errors."""
    from . import store
    from .reports import set_aside

    with store.reading(engine) as conn:
        return set_aside(conn, config)


def _set_aside_lines(config: Config, rows: list[dict[str, Any]], total: int) -> list[str]:
    """The first few set-aside messages, one line each: when (shop time), who, what, why."""
    lines = []
    for row in rows[:STATUS_SET_ASIDE_SHOWN]:
        received = config.calendar.local(datetime.fromisoformat(row["received_at"]))
        error = (row["error"].splitlines() or ["(no error recorded)"])[0]
        subject = row["subject"] if len(row["subject"]) <= 50 else row["subject"][:49] + "…"
        lines.append(f"  #{row['id']} {received:%Y-%m-%d %H:%M:%S %Z} from {row['from'] or '(no sender)'} "
                     f"“{subject}”: {error[:240]}")  # fmt: skip
    if total > STATUS_SET_ASIDE_SHOWN:
        lines.append(f"  and {total - STATUS_SET_ASIDE_SHOWN} more (see `sla-gateway status --json`)")
    return lines


def _oauth_status(config: Config, engine: Any, clock: Clock) -> list[dict[str, Any]]:
    from .tokens import Tokens

    now = clock()
    result = []
    for token in Tokens(config, engine, clock).states():
        result.append({"username": token.username, "status": token.status,
                       "text": token.describe(now, config.calendar.tz),
                       "obtained_at": _iso(token.obtained_at), "access_expires_at": _iso(token.access_expires_at),
                       "problem": token.problem, "problem_at": _iso(token.problem_at)})  # fmt: skip
    return result


def _backlog_status(config: Config, engine: Any, now: datetime) -> dict[str, Any]:
    """`status`: what waits to go out, since when and why (the shop's time zone, seconds)."""
    from . import store
    from .outbox import backlog

    with store.reading(engine) as conn:
        waiting = backlog(conn)

    def local(moment: datetime | None) -> datetime | None:
        return config.calendar.local(moment).replace(microsecond=0) if moment else None

    oldest, next_try = local(waiting.oldest_at), local(waiting.next_try_at)
    age = timedelta(seconds=int(waiting.waiting(now).total_seconds()))
    text = ""
    if oldest is not None and next_try is not None:
        tried = (f"{_count(waiting.attempts, 'attempt')}, last error: {waiting.last_error}" if waiting.attempts
                 else "not tried yet")  # fmt: skip
        text = (f"{waiting.pending} waiting, the oldest since {oldest:%Y-%m-%d %H:%M:%S %Z} "
                f"({_words(age)}); {tried}; next try {next_try:%Y-%m-%d %H:%M:%S %Z}")  # fmt: skip
    return {"pending": waiting.pending, "oldest_at": oldest.isoformat() if oldest else None,
            "waiting_seconds": int(age.total_seconds()), "attempts": waiting.attempts,
            "last_error": waiting.last_error, "next_try_at": next_try.isoformat() if next_try else None,
            "text": text}  # fmt: skip


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


@cli.command()
@click.argument("inbox_name", metavar="[INBOX]", required=False)
@click.option("--send", "for_send", is_flag=True,
              help="Sign in the [send] account (needed only when it is not also an inbox's).")  # fmt: skip
@click.option("--import", "import_token", is_flag=True,
              help="Instead of the device sign-in, read a refresh token obtained elsewhere "
                   "(Google; see README) from standard input; it is tried before it is stored.")  # fmt: skip
@click.option("--browser", is_flag=True,
              help="Sign in through a browser redirected to this machine (needed for Google); "
                   "over SSH, forward the port first (see README).")  # fmt: skip
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="With --browser: the port on 127.0.0.1 the browser is sent back to.")  # fmt: skip
@click.pass_context
def login(ctx: click.Context, inbox_name: str | None, for_send: bool, import_token: bool,
          browser: bool, port: int) -> None:  # fmt: skip
    """Sign a mailbox in with OAuth 2.0 (auth = "oauth2"): shows a web address and a code
    to approve in any browser (or, with --browser, an address that comes back here), then
    stores the refresh token encrypted in the database."""
    from .tokens import Tokens

    state = _state(ctx)
    config = state.config
    engine = state.engine
    tokens = Tokens(config, engine, state.clock)
    source = _login_source(config, tokens, inbox_name, for_send)
    tokens.fernet()  # a missing key is said now, not after the owner approved
    provider = source.oauth.provider
    if import_token and browser:
        raise click.UsageError("give --import or --browser, not both")
    if browser:

        def show(request: Any) -> None:
            bound = request.redirect_uri.rstrip("/").rpartition(":")[2]
            click.echo(f"To sign in {source.username} ({provider}), open this address in a browser:")
            click.echo(f"\n    {request.url}\n")
            click.echo(f"The browser is then sent back to {request.redirect_uri} on this machine. If this "
                       "machine has no browser, first run on your own computer:")
            click.echo(f"\n    ssh -L {bound}:127.0.0.1:{bound} THIS-SERVER\n")
            click.echo("and open the address there. Waiting for the sign-in ...")

        grant = source.browser_login(port=port, show=show)
    elif import_token:
        refresh = click.prompt(f"Refresh token for {source.username}", hide_input=True,
                               err=True).strip()  # fmt: skip
        grant = source.import_refresh_token(refresh)
    else:
        device = source.start_device_login()
        click.echo(f"To sign in {source.username} ({provider}), open this address in any browser:")
        click.echo(f"\n    {device.verification_uri}\n")
        click.echo(f"and enter the code:  {device.user_code}")
        if device.verification_uri_complete:
            click.echo(f"(or open {device.verification_uri_complete})")
        click.echo(f"Waiting for the approval (the code is valid until {device.expires_at:%H:%M:%S %Z}) ...")
        grant = source.finish_device_login(device)
    click.echo(f"signed in {source.username}; the refresh token is stored encrypted in the database "
               f"(access token valid until {grant.expires_at:%Y-%m-%d %H:%M:%S %Z})")  # fmt: skip
    if source.label != "--send" and tokens.is_sender(source):
        click.echo("this sign-in is also used for sending ([send])")


def _login_source(config: Config, tokens: Any, inbox_name: str | None, for_send: bool) -> Any:
    oauth_inboxes = [i.name for i in config.oauth_inboxes]
    if for_send:
        if inbox_name:
            raise click.UsageError("give an INBOX or --send, not both")
        if not config.send.uses_oauth:
            raise click.UsageError('[send] does not sign in with OAuth (it needs transport = "smtp" and auth = "oauth2")')
        return tokens.for_send()
    if inbox_name is None:
        if len(oauth_inboxes) == 1:
            inbox_name = oauth_inboxes[0]
        elif not oauth_inboxes and config.send.uses_oauth:
            return tokens.for_send()
        else:
            known = ", ".join(oauth_inboxes) or "none"
            raise click.UsageError(f"which inbox? (inboxes that sign in with OAuth: {known})")
    inbox = next((i for i in config.inboxes if i.name == inbox_name), None)
    if inbox is None:
        known = ", ".join(i.name for i in config.inboxes)
        raise click.BadParameter(f'no inbox is named "{inbox_name}" (configured: {known})', param_hint="INBOX")
    if inbox.imap is None or inbox.imap.auth != "oauth2":
        raise click.BadParameter(f'inbox {inbox_name} does not sign in with OAuth: set auth = "oauth2" in its '
                                 "[inbox.imap] (see README: OAuth)", param_hint="INBOX")  # fmt: skip
    return tokens.for_imap(inbox)


@cli.command()
@click.pass_context
def retry(ctx: click.Context) -> None:
    """Process set-aside messages and resend failed outbox mail, after fixing the cause."""
    from . import store
    from .outbox import OutboxSender
    from .pipeline import Pipeline

    state = _state(ctx)
    config = state.config
    now = state.clock()
    engine = state.engine
    with store.begin(engine) as conn:
        shunted = store.release_set_aside(conn)
        failed = store.requeue_failed(conn, now)
    from .reports import processing_state, service_running

    running = service_running(engine, now)
    if running:  # its processor and sender take them: never two of either at once
        sent_text = "the running service processes and sends them"
        still, waiting = _await_processing(engine, shunted)
    else:
        pipeline = Pipeline(config, engine, state.clock)
        for i in shunted:
            pipeline.process(i)
        still, waiting = processing_state(engine, shunted)
        sender = OutboxSender(
            engine,
            _transport(config, engine, state.clock),
            state.clock,
            give_up_after=config.send.give_up_after,
        )
        sent_text = f"{sender.send_due()} sent now"
        sender.close()
    again = f" ({still} set aside again)" if shunted or not running else ""
    if waiting:
        again = f" ({still} set aside again, {waiting} not processed yet — see `sla-gateway status`)"
    click.echo(f"{len(shunted)} set-aside messages processed again{again}; "
               f"{failed} failed outbox messages requeued; {sent_text}")  # fmt: skip
    if still or waiting:
        ctx.exit(1)


RETRY_WAIT = 60.0  # seconds `retry` waits for a running service to process what it released


def _await_processing(engine: Any, ids: list[int]) -> tuple[int, int]:
    """`reports.processing_state` once the running service has processed these (or
    RETRY_WAIT has passed): its processor takes them within seconds."""
    import time

    from .reports import processing_state

    deadline = time.monotonic() + RETRY_WAIT
    while True:
        still, waiting = processing_state(engine, ids)
        if not waiting or time.monotonic() >= deadline:
            return still, waiting
        time.sleep(0.2)


@cli.command()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["html", "markdown", "text"]),
    default="markdown",
    show_default=True,
)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write to this file.")
@click.pass_context
def policy(ctx: click.Context, fmt: str, out: Path | None) -> None:
    """The shop's public service promise, from the configuration that is measured."""
    from .render import Renderer, render_policy

    state = _state(ctx)
    text = render_policy(Renderer(state.config), fmt, state.clock())
    if out is not None:
        _write_out(out, text)
        click.echo(f"wrote {out}")
    else:
        click.echo(text, nl=False)


@cli.command()
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("config"),
    show_default=True,
    help="Where to write gateway.toml and templates/.",
)
@click.option("--non-interactive", is_flag=True, help="Ask nothing; take the flags (and defaults).")
@click.option("--shop", default=None, help="The shop's name.")
@click.option("--address", default=None, help="The support address, e.g. support@shop.example.")
@click.option("--language", default=None, help="The acknowledgments' language: en, de, fr, es or nl.")
@click.option("--timezone", "tz_name", default=None, help="IANA time zone, e.g. Europe/Berlin.")
@click.option("--country", default=None, help='Public holidays, e.g. "DE-BE"; "" for none.')
@click.option("--hours", default=None, help='Weekday opening hours, e.g. "09:00-17:00".')
@click.option(
    "--provider",
    type=click.Choice(["gmail", "fastmail", "microsoft365", "imap", "smtp-forwarding"]),
    default=None,
    help="Where the support mailbox lives.",
)
@click.option("--imap-host", default="", help="IMAP server (provider imap).")
@click.option(
    "--smtp-host", default="", help="Outgoing SMTP server (provider imap / smtp-forwarding)."
)
@click.option("--auth", "auth", type=click.Choice(["password", "oauth2"]), default=None,
              help="gmail / microsoft365: sign in with an app password or OAuth 2.0 "
                   "(default: oauth2 for microsoft365, password for gmail).")  # fmt: skip
@click.option("--force", is_flag=True, help="Overwrite an existing gateway.toml.")
@click.pass_context
def init(ctx: click.Context, directory: Path, non_interactive: bool, shop: str | None, address: str | None,
         language: str | None, tz_name: str | None, country: str | None, hours: str | None, provider: str | None, imap_host: str,
         smtp_host: str, auth: str | None, force: bool) -> None:  # fmt: skip
    """Write a first, commented configuration (and the templates to customise)."""
    from .config import load as load_config
    from .setup import ANSWER_CHECKS, PRESETS, Answers, BadAnswer, default_auth, write

    target = directory / "gateway.toml"
    if (target.exists() and not force) or directory.is_file():  # before asking anything
        what = f"{directory} is a file, not a directory" if directory.is_file() else \
            f"{target} exists; use --force to overwrite it"  # fmt: skip
        click.echo(f"error: {what}", err=True)
        ctx.exit(2)

    def checked(field: str, option: str) -> Callable[[str], str]:
        def check(text: str) -> str:
            if field not in ANSWER_CHECKS:
                return text.strip()
            try:
                return ANSWER_CHECKS[field](text)
            except BadAnswer as exc:  # a prompt says it and asks again; a flag ends here
                raise click.BadParameter(str(exc), param_hint=option) from None
        return check

    def ask(field: str, value: str | None, question: str, default: str) -> str:
        check = checked(field, f"--{field}")
        if value is not None:
            return check(value)
        if non_interactive:
            return check(default)
        return str(click.prompt(question, default=default, value_proc=check))

    def answers_auth(chosen: str) -> str:
        preset = PRESETS.get(chosen)
        if preset is None or not preset.oauth_provider:
            return "password"
        return ask("auth", auth, "Sign in with (password, oauth2)", default_auth(chosen))

    answers = Answers(
        shop=ask("shop", shop, "Shop name", "Example Shop"),
        address=ask("address", address, "Support address", "support@shop.example"),
        language=ask("language", language, "Acknowledgment language (en, de, fr, es, nl)", "en"),
        timezone=ask("timezone", tz_name, "Time zone", "Europe/Berlin"),
        country=ask("country", country, "Country for public holidays (e.g. DE-BE, empty for none)", ""),
        hours=ask("hours", hours, "Opening hours Monday to Friday", "09:00-17:00"),
        provider=ask(
            "provider",
            provider,
            "Mail provider (gmail, fastmail, microsoft365, imap, smtp-forwarding)",
            "gmail",
        ),
        imap_host=imap_host,
        smtp_host=smtp_host,
    )
    answers = replace(answers, auth=answers_auth(answers.provider))
    try:
        path = write(directory, answers, force=force)
    except FileExistsError:  # created meanwhile
        click.echo(f"error: {target} exists; use --force to overwrite it", err=True)
        ctx.exit(2)
    load_config(path)  # what init writes must pass check
    click.echo(f"wrote {path} and {directory / 'templates'}/")
    if answers.auth == "oauth2":
        click.echo("next: register the app and fill in client_id (README: Google Workspace / Microsoft 365 with OAuth), "
                   f"create the token key, then `sla-gateway --config {path} login` and `check --connect`")  # fmt: skip
    else:
        click.echo(f"next: put the passwords in files (see README, Deployment), then "
                   f"`sla-gateway --config {path} check --connect`")  # fmt: skip


# ---------------------------------------------------------------------------- db


@cli.group()
def db() -> None:
    """Database maintenance."""


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Create or migrate the database schema to the current version."""
    from . import store

    config = _state(ctx).config
    engine = _state(ctx).engine  # migrated when made
    click.echo(
        f"database {_redact(config.database)} at revision {store.current_revision(engine)}"
    )


def main() -> NoReturn:
    cli.main(prog_name="sla-gateway")
    raise SystemExit(0)  # pragma: no cover - click exits itself
