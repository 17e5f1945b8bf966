"""A real, throwaway Dovecot IMAP server for tests: ``Dovecot`` and the ``dovecot`` fixture.

This module owns everything about the test IMAP server: its configuration, its process,
its users and mailboxes, and the helpers tests use to put mail in, look at flags, change a
folder's UIDVALIDITY and break sessions. Nothing here is part of the gateway.

The server is Dovecot from the Debian packages (``scripts/install-system-deps`` installs
them). ``Dovecot(root).start()`` writes a configuration under ``root`` and runs
``dovecot -F -c root/dovecot.conf`` as a child process listening only on 127.0.0.1, on a
free port chosen at the first start and kept across ``restart()``. Everything it writes
(configuration, sockets, state, log, mail) stays under ``root``; ports 143/993 and any
system-wide Dovecot are never touched. ``root/dovecot.log`` is the server's log.

* Users come from a passwd-file (``root/users``, plaintext passwords); plaintext LOGIN and
  AUTH=PLAIN are allowed without TLS. Failed logins get no 2 s delay and no growing
  per-IP penalty (Dovecot still answers failures in 0.5 s batches).
* Mail is Maildir under ``root/mail/<user>``, Dovecot's default ``.`` hierarchy separator.
  INBOX, ``Sent`` (\\Sent), ``Drafts`` (\\Drafts) and ``Trash`` (\\Trash) are created and
  subscribed automatically (deleted, they come back). Capabilities are Dovecot's
  defaults (IDLE, UIDPLUS, MOVE, CONDSTORE, ...); IDLE reports new mail at once
  (inotify, with a 1 s fallback poll).
* ``Dovecot(root, tls=True)`` also offers STARTTLS on ``port`` and implicit TLS on
  ``tls_port``, with a self-signed certificate for 127.0.0.1 made by ``openssl`` at the
  first start; trust it with ``ca_file``. Plaintext login stays allowed on ``port``.
* ``Dovecot(root, oauth2_introspection_url=url)`` also offers AUTH=XOAUTH2 and
  AUTH=OAUTHBEARER: its oauth2 passdb POSTs ``token=<bearer>`` to that RFC 7662 endpoint
  (tests/oauthserver.py's) for every such login and accepts it when the answer has
  ``"active": true`` and a ``username`` equal to the login name. There is no auth cache,
  so a revoked or expired token fails at the very next login. A refused token gets the
  Gmail-style continuation (``+ <base64 {"status":"401","schemes":"bearer",...}>``),
  then ``NO [AUTHENTICATIONFAILED]`` after the client's reply. The user must still be in
  the passwd-file (the userdb; an unknown one is an internal login failure), and
  password logins keep working: that passdb serves only PLAIN and LOGIN.

Run as root (CI), Dovecot's own processes run as root, its login processes as ``dovenull``
and mail access as the ``dovecot`` user: Dovecot refuses mail access as root, so
``root/mail`` is owned by ``dovecot`` and the mail processes chroot into it (the pytest
temporary directory above it is private to root). Run as an ordinary user, everything runs
as that user without chroots.

The ``dovecot`` fixture is function-scoped: a fresh server with a fresh mail store per
test (starting takes about 0.1 s, stopping a few hundredths). Use it in a test module::

    from tests import imapserver

    dovecot = imapserver.dovecot  # or pytest_plugins = ("tests.imapserver",) in conftest.py

    def test_something(dovecot: imapserver.Dovecot) -> None:
        uid = dovecot.append("INBOX", b"From: a@b.example\\r\\n\\r\\nhello\\r\\n")
"""

from __future__ import annotations

import atexit
import contextlib
import grp
import imaplib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
from imapclient.imap_utf7 import encode as _utf7_encode

__all__ = ["DEFAULT_PASSWORD", "DEFAULT_USER", "Dovecot", "DovecotError", "dovecot"]

DEFAULT_USER = "support@shop.example"
DEFAULT_PASSWORD = "secret"

#: Folders every user has from the start (besides INBOX), with their special-use flag.
SPECIAL_FOLDERS = {"Sent": "\\Sent", "Drafts": "\\Drafts", "Trash": "\\Trash"}

_SEARCH_PATH = os.pathsep.join(
    [os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin", "/usr/local/sbin", "/sbin"]
)
_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 10.0
_SOCKET_PATH_MAX = 107  # sockaddr_un.sun_path, minus the terminating NUL
_LONGEST_SOCKET_NAME = "replication-notify-fifo"
_UNSAFE_NAME = re.compile(r"[\s:/\\]|^\.")

_running: weakref.WeakSet[Dovecot] = weakref.WeakSet()


class DovecotError(RuntimeError):
    """The test IMAP server could not be started or did not do what a helper asked."""


@dataclass(frozen=True)
class _Message:
    """One message as fetched for re-adding: raw bytes, flags, INTERNALDATE."""

    raw: bytes
    flags: tuple[str, ...]
    internaldate: str  # quoted, as the server sent it: '"22-Nov-2026 09:00:00 +0000"'


def _binary(name: str) -> str:
    path = shutil.which(name, path=_SEARCH_PATH)
    if path is None:
        raise DovecotError(
            f"{name!r} not found: the IMAP tests need Dovecot; "
            "run scripts/install-system-deps (as root) first"
        )
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _mailbox_arg(name: str) -> str:
    """A mailbox name as an IMAP quoted string, in modified UTF-7."""
    encoded: bytes = _utf7_encode(name)
    quoted = encoded.decode("ascii")
    return '"' + quoted.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _check(response: tuple[str, Sequence[object]], what: str) -> list[object]:
    """The data of an imaplib ``(typ, data)`` answer; DovecotError unless typ is OK."""
    typ, data = response
    if typ != "OK":
        raise DovecotError(f"{what} failed: {typ} {data!r}")
    return list(data)


class Dovecot:
    """One throwaway Dovecot instance under ``root``; see the module docstring.

    ``users`` maps login names to passwords (default: ``support@shop.example`` /
    ``secret``); the first one is ``user``/``password`` and the default for helpers.
    """

    host: str = "127.0.0.1"

    def __init__(
        self,
        root: Path,
        *,
        users: dict[str, str] | None = None,
        tls: bool = False,
        oauth2_introspection_url: str | None = None,
        oauth2_mechanisms: tuple[str, ...] = ("xoauth2", "oauthbearer"),
    ) -> None:
        self.root = Path(root).resolve()
        self.users: dict[str, str] = dict(users) if users else {DEFAULT_USER: DEFAULT_PASSWORD}
        for name, password in self.users.items():
            self._check_credentials(name, password)
        self.user, self.password = next(iter(self.users.items()))
        self.tls = tls
        #: Where the oauth2 passdb checks bearer tokens (RFC 7662, POST); None: no OAuth.
        self.oauth2_introspection_url = oauth2_introspection_url
        #: The SASL mechanisms offered for bearer tokens (e.g. only ("oauthbearer",)).
        self.oauth2_mechanisms = oauth2_mechanisms
        self.port = 0  #: the IMAP port (STARTTLS too when tls=True); chosen at first start
        self.tls_port: int | None = None  #: the implicit-TLS (imaps) port when tls=True
        self.ca_file: Path | None = None  #: the self-signed certificate to trust when tls=True
        self.conf_path = self.root / "dovecot.conf"
        self.log_path = self.root / "dovecot.log"
        self.mail_dir = self.root / "mail"
        self._base_dir = self.root / "run"
        self._stderr_path = self.root / "dovecot.stderr"
        self._users_path = self.root / "users"
        self._oauth2_path = self.root / "dovecot-oauth2.conf.ext"
        self._process: subprocess.Popen[bytes] | None = None
        longest = len(str(self._base_dir / "login" / _LONGEST_SOCKET_NAME))
        if longest > _SOCKET_PATH_MAX:
            raise DovecotError(
                f"root {self.root} is too long for Dovecot's unix sockets "
                f"({longest} > {_SOCKET_PATH_MAX} characters); use a shorter directory"
            )

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Dovecot {self.host}:{self.port} {state} root={self.root}>"

    def __enter__(self) -> Dovecot:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- process ----------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Write the configuration and start Dovecot; return once it greets on ``port``.

        Raises DovecotError with the server's log if it does not come up.
        """
        if self.running:
            raise DovecotError(f"{self!r} is already running")
        binary = _binary("dovecot")
        self._prepare_files()
        # A fresh port is picked again if someone else grabs it before Dovecot binds it;
        # a kept port (restart) gets a few seconds to become free.
        fixed_port = self.port != 0
        give_up = time.monotonic() + (3.0 if fixed_port else 0.0)
        for attempt in range(1, 100):
            if not fixed_port:
                self.port = _free_port()
                self.tls_port = _free_port() if self.tls else None
            elif self.tls and self.tls_port is None:
                self.tls_port = _free_port()
            self.conf_path.write_text(self._config(), encoding="utf-8")
            log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            with open(self._stderr_path, "wb") as stderr:  # the latest attempt's only
                self._process = subprocess.Popen(
                    [binary, "-F", "-c", str(self.conf_path)],
                    stdin=subprocess.DEVNULL,
                    stdout=stderr,
                    stderr=stderr,
                    start_new_session=True,  # its own process group, for a clean stop
                )
            try:
                self._wait_until_ready()
            except DovecotError:
                self._kill()
                output = self._log_since(log_offset) + self._stderr_path.read_text(errors="replace")
                in_use = "Address already in use" in output
                if in_use and (attempt < 5 if not fixed_port else time.monotonic() < give_up):
                    time.sleep(0.2 if fixed_port else 0)
                    continue
                raise
            _running.add(self)
            return

    def stop(self) -> None:
        """Stop the server and wait until all its processes are gone; idempotent.

        SIGTERM goes to Dovecot's whole process group at once (and again while any child
        is left), so every process shuts down cleanly in parallel; the master, which can
        linger for a second after its children have gone, is then killed. Anything left
        after 10 s is SIGKILLed.
        """
        process = self._process
        if process is None:
            return
        group = process.pid  # start_new_session: the master leads its own process group
        deadline = time.monotonic() + _STOP_TIMEOUT
        next_term = 0.0
        children_gone_at: float | None = None
        while time.monotonic() < deadline:
            now = time.monotonic()
            children = [pid for pid in _live_members(group) if pid != group]
            if process.poll() is not None and not children:
                break
            if now >= next_term and (children or next_term == 0.0):
                # Again and again: a master that has not seen its own SIGTERM yet
                # respawns children that died of theirs (anvil, log).
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(group, signal.SIGTERM)
                next_term = now + 0.1
            if children:
                children_gone_at = None
            elif children_gone_at is None:
                children_gone_at = now
            elif now - children_gone_at > 0.1:
                process.kill()  # only the master's own teardown is left
            time.sleep(0.01)
        self._kill()
        _running.discard(self)

    def restart(self) -> None:
        """Stop and start again on the same port(s), keeping all mail."""
        self.stop()
        self.start()

    def drop_connections(self) -> None:
        """Kill every logged-in IMAP session (``doveadm kick``) and wait until they are gone.

        The server keeps running and accepts new connections at once. Connections that
        have not logged in yet are not affected.
        """
        self._require_running()
        for user in self.users:
            # Exit status 68 means "no users kicked": nothing to do for that user.
            self._doveadm("kick", user, ok_codes=(0, 68))
        deadline = time.monotonic() + _STOP_TIMEOUT
        while self._sessions():
            if time.monotonic() > deadline:
                raise DovecotError(f"sessions still open after doveadm kick: {self._sessions()}")
            time.sleep(0.02)

    # -- users and mail ---------------------------------------------------------------

    def add_user(self, name: str, password: str) -> None:
        """Add a user; when the server runs, return once it accepts the user's login."""
        self._check_credentials(name, password)
        self.users[name] = password
        if not self._users_path.exists():
            return  # not started yet: start() writes the file
        self._write_users()
        if not self.running:
            return
        # Dovecot looks at the passwd-file's mtime at most once a second: wait for it.
        deadline = time.monotonic() + _START_TIMEOUT
        while self._doveadm("user", name, ok_codes=(0, 67)).returncode != 0:  # 67: unknown
            if time.monotonic() > deadline:
                raise DovecotError(f"Dovecot did not pick up the new user {name!r}")
            time.sleep(0.05)

    def append(
        self,
        folder: str,
        raw: bytes,
        *,
        flags: tuple[str, ...] = (),
        user: str | None = None,
        internaldate: datetime | str | None = None,
    ) -> int:
        """APPEND ``raw`` to ``folder`` and return its new UID (from APPENDUID).

        ``flags`` are IMAP flags such as ``("\\\\Seen",)``; ``internaldate`` is an aware
        datetime or a quoted IMAP date-time string (default: now).
        """
        date_time = imaplib.Time2Internaldate(internaldate) if internaldate else None
        with self._session(user) as conn:
            data = _check(
                conn.append(_mailbox_arg(folder), " ".join(flags) or None, date_time, raw),
                f"APPEND to {folder!r}",
            )
        match = re.search(rb"APPENDUID (\d+) (\d+)", b" ".join(_as_bytes(d) for d in data))
        if match is None:
            raise DovecotError(f"APPEND to {folder!r}: no APPENDUID in {data!r}")
        return int(match.group(2))

    def create_folder(self, name: str, user: str | None = None) -> None:
        """CREATE and SUBSCRIBE a folder (use ``.`` to nest: ``"Archive.2026"``)."""
        with self._session(user) as conn:
            _check(conn.create(_mailbox_arg(name)), f"CREATE {name!r}")
            _check(conn.subscribe(_mailbox_arg(name)), f"SUBSCRIBE {name!r}")

    def flags(self, folder: str, uid: int, user: str | None = None) -> tuple[str, ...]:
        """The flags of message ``uid`` in ``folder`` (read without changing anything)."""
        with self._session(user) as conn:
            _check(conn.select(_mailbox_arg(folder), readonly=True), f"EXAMINE {folder!r}")
            data = _check(conn.uid("FETCH", str(uid), "(FLAGS)"), f"FETCH {uid} in {folder!r}")
        for item in data:
            match = re.search(rb"UID (\d+)", _as_bytes(item))
            flags = re.search(rb"FLAGS \(([^)]*)\)", _as_bytes(item))
            if match and flags and int(match.group(1)) == uid:
                return tuple(flag.decode("ascii") for flag in flags.group(1).split())
        raise DovecotError(f"no message with UID {uid} in {folder!r}")

    def uids(self, folder: str, user: str | None = None) -> list[int]:
        """The UIDs of all messages in ``folder``, ascending."""
        with self._session(user) as conn:
            _check(conn.select(_mailbox_arg(folder), readonly=True), f"EXAMINE {folder!r}")
            data = _check(conn.uid("SEARCH", "ALL"), f"SEARCH {folder!r}")
        return sorted(int(uid) for item in data for uid in _as_bytes(item).split())

    def uidvalidity(self, folder: str, user: str | None = None) -> int:
        """The folder's current UIDVALIDITY (from STATUS)."""
        with self._session(user) as conn:
            data = _check(conn.status(_mailbox_arg(folder), "(UIDVALIDITY)"), f"STATUS {folder!r}")
        match = re.search(rb"UIDVALIDITY (\d+)", _as_bytes(data[0]))
        if match is None:
            raise DovecotError(f"STATUS {folder!r}: no UIDVALIDITY in {data!r}")
        return int(match.group(1))

    def reset_uidvalidity(self, folder: str, user: str | None = None) -> None:
        """Give ``folder`` a new UIDVALIDITY, as after a restore, keeping its messages.

        All messages are fetched, expunged, the UIDVALIDITY is set to the old value + 1
        (``doveadm mailbox update --uid-validity``; works for INBOX too, which cannot be
        deleted), and the messages are appended again with their flags and INTERNALDATE.
        They get new UIDs, all above the old UIDNEXT (Dovecot cannot lower it), in their
        old order. Sessions that have the folder selected get ``* BYE IMAP session state
        is inconsistent, please relogin.`` and are disconnected, as with a real restore.
        """
        user = user or self.user
        with self._session(user) as conn:
            _check(conn.select(_mailbox_arg(folder)), f"SELECT {folder!r}")
            messages: list[_Message] = []
            old_validity = int(_as_bytes(conn.untagged_responses["UIDVALIDITY"][0]))
            exists = int(_as_bytes(conn.untagged_responses["EXISTS"][-1]))
            if exists:
                data = _check(
                    conn.uid("FETCH", "1:*", "(FLAGS INTERNALDATE BODY.PEEK[])"),
                    f"FETCH all in {folder!r}",
                )
                messages = _parse_fetch(data)
                _check(
                    conn.uid("STORE", "1:*", "+FLAGS.SILENT", "(\\Deleted)"),
                    f"STORE \\Deleted in {folder!r}",
                )
                _check(conn.expunge(), f"EXPUNGE {folder!r}")
            conn.close()
        new_validity = old_validity % 0xFFFFFFFF + 1
        self._doveadm("mailbox", "update", "-u", user, "--uid-validity", str(new_validity), folder)
        for message in messages:
            self.append(
                folder,
                message.raw,
                flags=message.flags,
                user=user,
                internaldate=message.internaldate,
            )

    # -- internals --------------------------------------------------------------------

    @staticmethod
    def _check_credentials(name: str, password: str) -> None:
        if not name or _UNSAFE_NAME.search(name):
            raise ValueError(f"unusable IMAP user name for the test server: {name!r}")
        if ":" in password or "\n" in password:
            raise ValueError("test server passwords must not contain ':' or newlines")

    def _mail_owner(self) -> tuple[int, int]:
        """The uid/gid that owns and accesses the mail (never root: Dovecot refuses)."""
        if os.getuid() != 0:
            return os.getuid(), os.getgid()
        try:
            entry = pwd.getpwnam("dovecot")
        except KeyError as exc:
            raise DovecotError(
                "user 'dovecot' missing: reinstall dovecot-core (scripts/install-system-deps)"
            ) from exc
        return entry.pw_uid, entry.pw_gid

    def _prepare_files(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        for directory in (self._base_dir, self.root / "state"):
            directory.mkdir(exist_ok=True)
        self._write_users()
        if self.tls and self.ca_file is None:
            self.ca_file = self._make_certificate()
        if self.oauth2_introspection_url is not None:
            self._oauth2_path.write_text(self._oauth2_config(), encoding="utf-8")

    def _write_users(self) -> None:
        """Write the passwd-file and make sure every user's Maildir home exists."""
        lines = [f"{name}:{{PLAIN}}{password}::::::\n" for name, password in self.users.items()]
        tmp = self._users_path.with_suffix(".tmp")
        tmp.write_text("".join(lines), encoding="utf-8")
        tmp.chmod(0o600)
        tmp.replace(self._users_path)
        uid, gid = self._mail_owner()
        for directory in [self.mail_dir, *(self.mail_dir / name for name in self.users)]:
            directory.mkdir(mode=0o700, exist_ok=True)
            if os.getuid() == 0:
                os.chown(directory, uid, gid)

    def _make_certificate(self) -> Path:
        tls_dir = self.root / "tls"
        tls_dir.mkdir(exist_ok=True)
        cert, key = tls_dir / "cert.pem", tls_dir / "key.pem"
        command = [
            _binary("openssl"), "req", "-x509", "-newkey", "ec",
            "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(key), "-out", str(cert), "-days", "30",
            "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise DovecotError(f"openssl failed: {result.stderr}")
        key.chmod(0o600)
        return cert

    def _config(self) -> str:
        root = self.root
        as_root = os.getuid() == 0
        mail_uid, mail_gid = self._mail_owner()
        if as_root:
            identity = f"""\
# As root: Dovecot's internal processes run as root (they must read files under a
# root-only temporary directory); mail access runs as 'dovecot' inside root/mail.
default_internal_user = root
default_internal_group = root
default_login_user = dovenull
first_valid_uid = {mail_uid}
first_valid_gid = {mail_gid}
mail_uid = {mail_uid}
mail_gid = {mail_gid}
mail_chroot = {self.mail_dir}
mail_home = /%u
"""
        else:
            me = pwd.getpwuid(os.getuid()).pw_name
            my_group = grp.getgrgid(os.getgid()).gr_name
            identity = f"""\
# Not root: every process runs as {me}, without chroots.
default_internal_user = {me}
default_internal_group = {my_group}
default_login_user = {me}
first_valid_uid = {mail_uid}
first_valid_gid = {mail_gid}
mail_uid = {mail_uid}
mail_gid = {mail_gid}
mail_home = {self.mail_dir}/%u
"""
        chroot = "" if as_root else "  chroot =\n"
        if self.tls and self.ca_file is not None:
            tls = f"""\
ssl = yes
ssl_cert = <{self.ca_file}
ssl_key = <{self.ca_file.with_name("key.pem")}
"""
            imaps = f"  inet_listener imaps {{\n    port = {self.tls_port}\n    ssl = yes\n  }}\n"
        else:
            tls = "ssl = no\n"
            imaps = "  inet_listener imaps {\n    port = 0\n  }\n"
        auth = self._auth_config()
        mailboxes = "  mailbox INBOX {\n    auto = subscribe\n  }\n" + "".join(
            f"  mailbox {name} {{\n    special_use = {use}\n    auto = subscribe\n  }}\n"
            for name, use in SPECIAL_FOLDERS.items()
        )
        return f"""\
# Throwaway test server written by tests/imapserver.py; everything lives under {root}.
protocols = imap
listen = 127.0.0.1
base_dir = {self._base_dir}
state_dir = {root}/state
instance_name = sla-gateway-test
log_path = {self.log_path}
log_timestamp = "%Y-%m-%d %H:%M:%S "
verbose_proctitle = yes
shutdown_clients = yes

{identity}
{tls}disable_plaintext_auth = no
auth_failure_delay = 0
auth_verbose = yes
{auth}userdb {{
  driver = passwd-file
  args = {self._users_path}
}}

mail_location = maildir:~
mailbox_idle_check_interval = 1 secs
namespace inbox {{
  inbox = yes
{mailboxes}}}

service imap-login {{
{chroot}  inet_listener imap {{
    port = {self.port}
  }}
{imaps}}}
service imap-urlauth-login {{
{chroot}}}
service anvil {{
{chroot}  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""

    def _auth_config(self) -> str:
        """The mechanisms and passdbs: passwords always, bearer tokens with OAuth too."""
        passwords = f"""\
passdb {{
  driver = passwd-file
  mechanisms = plain login
  args = {self._users_path}
}}
"""
        if self.oauth2_introspection_url is None:
            return "auth_mechanisms = plain login\n" + passwords
        mechanisms = " ".join(self.oauth2_mechanisms)
        return f"""\
auth_mechanisms = plain login {mechanisms}
# No cache (the default, said out loud): a revoked token must fail at the next login.
auth_cache_size = 0
{passwords}passdb {{
  driver = oauth2
  mechanisms = {mechanisms}
  args = {self._oauth2_path}
}}
"""

    def _oauth2_config(self) -> str:
        """The oauth2 passdb's settings: ask the introspection endpoint about every token."""
        return f"""\
# Written by tests/imapserver.py: every login POSTs token=... to the introspection
# endpoint (no tokeninfo_url, no auth cache), so a revoked token fails at once.
introspection_url = {self.oauth2_introspection_url}
introspection_mode = post
force_introspection = yes
username_attribute = username
active_attribute = active
active_value = true
timeout_msecs = 5000
"""

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT
        last_error = "no attempt"
        while time.monotonic() < deadline:
            process = self._process
            if process is None or process.poll() is not None:
                code = None if process is None else process.returncode
                raise DovecotError(f"dovecot exited with status {code}\n{self._diagnostics()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=1) as sock:
                    greeting = sock.makefile("rb").readline()
                    if greeting.startswith(b"* OK"):
                        sock.sendall(b"x LOGOUT\r\n")
                        return
                    last_error = f"unexpected greeting {greeting!r}"
            except OSError as exc:
                last_error = str(exc)
            time.sleep(0.01)
        raise DovecotError(
            f"dovecot did not greet on {self.host}:{self.port} within {_START_TIMEOUT} s "
            f"({last_error})\n{self._diagnostics()}"
        )

    def _kill(self) -> None:
        """SIGKILL whatever is left of the server's process group and reap the master."""
        process = self._process
        if process is None:
            return
        if process.poll() is None or _live_members(process.pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        self._process = None
        # A master that did not finish its teardown leaves its pid file behind; should
        # that pid be reused, the next start would think Dovecot is still running.
        pid_file = self._base_dir / "master.pid"
        with contextlib.suppress(OSError):
            if pid_file.read_text().strip() == str(process.pid):
                pid_file.unlink()

    def _require_running(self) -> None:
        if not self.running:
            raise DovecotError(f"{self!r} is not running")

    def _log_since(self, offset: int) -> str:
        try:
            with open(self.log_path, "rb") as log:
                log.seek(offset)
                return log.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def _diagnostics(self) -> str:
        parts = []
        for path in (self._stderr_path, self.log_path):
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            tail = "\n".join(text.splitlines()[-40:])
            parts.append(f"--- {path} ---\n{tail}")
        return "\n".join(parts) or "(no log)"

    def _doveadm(
        self, *args: str, ok_codes: tuple[int, ...] = (0,)
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [_binary("doveadm"), "-c", str(self.conf_path), *args],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        if result.returncode not in ok_codes:
            raise DovecotError(
                f"doveadm {' '.join(args)} failed ({result.returncode}): "
                f"{result.stderr.strip() or result.stdout.strip()}"
            )
        return result

    def _sessions(self) -> list[str]:
        """Logged-in sessions as ``doveadm who`` lists them (without its header)."""
        return [line for line in self._doveadm("who").stdout.splitlines()[1:] if line.strip()]

    @contextlib.contextmanager
    def _session(self, user: str | None = None) -> Iterator[imaplib.IMAP4]:
        """A logged-in stdlib imaplib connection as ``user`` (default: ``self.user``)."""
        self._require_running()
        name = user or self.user
        try:
            password = self.users[name]
        except KeyError:
            raise DovecotError(f"unknown test user {name!r}; add it with add_user()") from None
        conn = imaplib.IMAP4(self.host, self.port, timeout=10)
        try:
            conn.login(name, password)
            yield conn
        finally:
            with contextlib.suppress(imaplib.IMAP4.error, OSError):
                conn.logout()


def _live_members(group: int) -> list[int]:
    """Processes of process group ``group`` that have not exited (zombies excluded)."""
    members = []
    try:
        entries = os.listdir("/proc")
    except OSError:  # no procfs: ask the kernel whether the group still exists
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return []
        except PermissionError:
            pass
        return [group]
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            stat = Path("/proc", entry, "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...; comm may contain spaces and parentheses.
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[2] == str(group) and fields[0] not in ("Z", "X"):
            members.append(int(entry))
    return members


def _as_bytes(item: object) -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, tuple):
        return b" ".join(_as_bytes(part) for part in item)
    return str(item).encode()


def _parse_fetch(data: list[object]) -> list[_Message]:
    """Turn imaplib's answer to ``UID FETCH (FLAGS INTERNALDATE BODY.PEEK[])`` into messages."""
    records: list[tuple[bytes, bytes]] = []
    for item in data:
        if isinstance(item, tuple):
            records.append((item[0], item[1]))
        elif isinstance(item, bytes) and records:
            # The rest of a response after the literal, e.g. b")" or b" FLAGS (\\Seen))".
            meta, raw = records[-1]
            records[-1] = (meta + item, raw)
    messages = []
    for meta, raw in records:
        flags = re.search(rb"FLAGS \(([^)]*)\)", meta)
        date = re.search(rb'INTERNALDATE ("[^"]*")', meta)
        if flags is None or date is None:
            raise DovecotError(f"unexpected FETCH response: {meta!r}")
        kept = tuple(f.decode("ascii") for f in flags.group(1).split() if f != b"\\Recent")
        messages.append(_Message(raw=raw, flags=kept, internaldate=date.group(1).decode()))
    return messages


@atexit.register
def _stop_leftovers() -> None:
    """Never leave a test server running when the interpreter exits."""
    for server in list(_running):
        server.stop()


@pytest.fixture
def dovecot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dovecot]:
    """A fresh, running Dovecot with one user (``support@shop.example`` / ``secret``)."""
    server = Dovecot(tmp_path_factory.mktemp("dovecot"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
