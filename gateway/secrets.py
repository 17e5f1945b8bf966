"""Reading passwords from where the configuration says they are, at the moment of use.

Owns: resolving a `Secret` (an environment variable, or a file such as a systemd
credential under $CREDENTIALS_DIRECTORY) to its value, and `problems()`, which tries every
secret a configuration names so that `check` and `run` say up front what is missing.
Values are never logged, never stored, never put in an error message; a missing secret is
the operator's configuration problem and says which variable or file is missing — for a
file, every path tried and whether $CREDENTIALS_DIRECTORY is set.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from .config import Config, Secret
from .errors import ConfigError, Problem


def read_secret(
    secret: Secret,
    key: str,
    environ: Mapping[str, str] | None = None,
    *,
    env_key: str = "password_env",
    file_key: str = "password_file",
) -> str:
    """The secret's value; `key` (e.g. "inbox.imap") and the key names are for messages."""
    env = os.environ if environ is None else environ
    if secret.env:
        value = env.get(secret.env)
        if not value:
            raise ConfigError(
                [
                    Problem(
                        "(environment)",
                        f"{key}.{env_key}",
                        f"${secret.env} is not set or empty",
                        f"export {secret.env}=... before starting sla-gateway",
                    )
                ]
            )
        return value
    if secret.file:
        path = credential_path(secret.file, env)
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            message, hint = _unreadable(secret.file, path, exc, env)
            raise ConfigError([Problem("(config)", f"{key}.{file_key}", message, hint)]) from None
    raise ConfigError(
        [
            Problem(
                "(config)",
                key,
                "no secret source configured",
                f"set {env_key} or {file_key}",
            )
        ]
    )


def _unreadable(name: str, path: Path, exc: OSError, env: Mapping[str, str]) -> tuple[str, str]:
    """What went wrong reading a secret file, naming every place looked, and the fix."""
    reason = exc.strerror or exc.__class__.__name__
    credentials = env.get("CREDENTIALS_DIRECTORY")
    if Path(name).is_absolute() or (credentials and path.parent == Path(credentials)):
        return f"cannot read {path}: {reason}", "check the path and the file's permissions"
    tried = path.absolute()
    if credentials:
        return (f"cannot read {name}: not in $CREDENTIALS_DIRECTORY ({credentials}), and {tried}: {reason}",
                "put the file there (the unit's LoadCredential=) or give an absolute path")  # fmt: skip
    return (f"cannot read {name}: $CREDENTIALS_DIRECTORY is not set, and {tried}: {reason}",
            "outside systemd, set CREDENTIALS_DIRECTORY to the folder the unit's LoadCredential= "
            "reads (e.g. /etc/sla-gateway/credentials), or give an absolute path")  # fmt: skip


def problems(config: Config, environ: Mapping[str, str] | None = None) -> list[Problem]:
    """Every secret the configuration names that cannot be read now (unset variable,
    missing or unreadable file), one problem each; the values read are discarded."""
    wanted: list[tuple[Secret, str, str, str]] = []  # secret, key, env key, file key
    for n, inbox in enumerate(config.inboxes):
        imap = inbox.imap
        if imap is None:
            continue
        if imap.oauth is None:
            wanted.append((imap.password, f"inbox[{n}].imap", "password_env", "password_file"))
        else:
            wanted.append((imap.oauth.client_secret, f"inbox[{n}].imap", "client_secret_env", "client_secret_file"))
    send = config.send
    if send.transport == "smtp":
        if send.oauth is None:
            wanted.append((send.password, "send", "password_env", "password_file"))
        else:
            wanted.append((send.oauth.client_secret, "send", "client_secret_env", "client_secret_file"))
    if config.listen is not None and config.listen.require_auth:
        wanted.append((config.listen.password, "listen", "password_env", "password_file"))
    if config.oauth_inboxes or send.uses_oauth:
        wanted.append((config.oauth.key, "oauth", "token_key_env", "token_key_file"))
    found: list[Problem] = []
    for secret, key, env_key, file_key in wanted:
        if not secret.env and not secret.file:
            continue  # none needed (no login, a public OAuth client): the config check says so
        try:
            read_secret(secret, key, environ, env_key=env_key, file_key=file_key)
        except ConfigError as exc:
            found += exc.problems
    return found


def credential_path(name: str, environ: Mapping[str, str]) -> Path:
    """A secret file's path: a relative name is looked up first among systemd's
    credentials ($CREDENTIALS_DIRECTORY), then as given."""
    path = Path(name)
    if not path.is_absolute() and environ.get("CREDENTIALS_DIRECTORY"):
        candidate = Path(environ["CREDENTIALS_DIRECTORY"]) / path
        if candidate.exists():
            return candidate
    return path
