"""Replaying saved mail: rebuild a shop's past conversations and replies from an mbox file,
a maildir or a folder of .eml files, to measure past performance before going live.

Owns: reading those formats, choosing each message's time (its Date header; else the
mbox From_ line, else the file's time), and feeding the messages in time order through
the same pipeline as live mail — with acknowledgments and alerts switched off; commands
by plus-address (a copy to support+resolved@) count as they do live. At the end, the
scheduler's steps run at the replay's "now": close_after resolves the conversations whose
customer stopped writing (at the team's last reply), then breaches are marked. Replaying
the same source twice changes nothing (the pipeline's dedup sees the same messages).
"""

from __future__ import annotations

import mailbox
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path

from .config import Config
from .errors import InputError
from .model import Received
from .pipeline import Pipeline
from .scheduler import Scheduler
from .store import Engine


@dataclass(frozen=True)
class Saved:
    raw: bytes
    at: datetime
    origin: str  # file name or mbox position, for messages


@dataclass
class Summary:
    read: int = 0  # messages found in the source
    new: int = 0  # not seen before (a second replay finds none)
    unreadable: int = 0  # not e-mail at all; kept, set aside


def _date_of(raw: bytes) -> datetime | None:
    end = raw.find(b"\n\n")
    end2 = raw.find(b"\r\n\r\n")
    head = raw[: max(end, end2) if max(end, end2) > 0 else len(raw)]
    for line in head.decode("utf-8", "replace").replace("\r\n", "\n").split("\n"):
        if line.lower().startswith("date:"):
            try:
                value = parsedate_to_datetime(line[5:].strip())
            except (TypeError, ValueError, IndexError):
                return None
            return value if value.tzinfo else value.replace(tzinfo=UTC)
    return None


def _from_line_date(from_line: str) -> datetime | None:
    """ "MAILER-DAEMON Fri Jul  8 12:08:34 2011" -> that time, taken as UTC."""
    parts = from_line.split()
    for start in range(1, len(parts)):
        try:
            parsed = time.strptime(" ".join(parts[start : start + 5]), "%a %b %d %H:%M:%S %Y")
        except ValueError:
            continue
        return datetime(*parsed[:6], tzinfo=UTC)
    return None


def read_source(path: Path) -> Iterator[Saved]:
    """Every message in an mbox file, a maildir, or a directory of .eml files."""
    if path.is_dir() and (path / "cur").is_dir() and (path / "new").is_dir():
        for sub in ("cur", "new"):  # a maildir: one message per file
            for file in sorted(p for p in (path / sub).iterdir() if p.is_file()):
                raw = file.read_bytes()
                yield Saved(
                    raw,
                    _date_of(raw) or datetime.fromtimestamp(file.stat().st_mtime, UTC),
                    str(file),
                )
    elif path.is_dir():
        for file in sorted(
            p
            for p in path.rglob("*")
            if p.is_file() and p.suffix.lower() in (".eml", ".msg", ".txt", "")
        ):
            raw = file.read_bytes()
            yield Saved(
                raw, _date_of(raw) or datetime.fromtimestamp(file.stat().st_mtime, UTC), str(file)
            )
    else:
        box_file = mailbox.mbox(path, create=False)
        for index, key in enumerate(box_file.iterkeys()):
            message = box_file.get_message(key)
            raw = box_file.get_bytes(key, from_=False)
            fallback = _from_line_date(message.get_from()) or datetime.fromtimestamp(
                path.stat().st_mtime, UTC
            )
            yield Saved(raw, _date_of(raw) or fallback, f"{path.name}#{index + 1}")


def replay(config: Config, engine: Engine, path: Path, *, now: datetime,
           progress: Callable[[int, int], None] | None = None) -> Summary:  # fmt: skip
    """Feed every saved message, oldest first, through the pipeline; send nothing."""
    items = sorted(read_source(path), key=lambda s: s.at)
    current = {"at": now}
    pipeline = Pipeline(config, engine, lambda: current["at"], replay=True)
    scheduler = Scheduler(config, engine, lambda: now, pipeline)
    summary = Summary()
    for index, item in enumerate(items):
        summary.read += 1
        current["at"] = item.at
        # A conversation quiet for close_after before this mail was resolved then (at the
        # team's last reply), as the running service would have done; this mail may
        # reopen it.
        scheduler.close_quiet(item.at)
        try:
            row_id, new = pipeline.accept(Received(item.raw, "replay", item.at))
        except InputError:
            summary.unreadable += 1
            continue
        if new and row_id is not None:
            summary.new += 1
            outcome = pipeline.process(row_id)
            if outcome is None or outcome.status != "processed":
                summary.unreadable += 1
        if progress is not None:
            progress(index + 1, len(items))
    # Bring states up to now; replayed history raises no alerts. Conversations whose
    # customer stopped writing are resolved at the team's last reply (close_after) first,
    # so that their resolution clock stops there instead of running into a breach.
    scheduler.close_quiet(now)
    scheduler.run_due()
    return summary
