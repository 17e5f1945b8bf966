"""Reading passwords from where the configuration says they are, at the moment of use.

Owns: resolving a `Secret` (an environment variable, or a file such as a systemd
credential under $CREDENTIALS_DIRECTORY) to its value. Values are never logged, never
stored, never put in an error message; a missing secret is the operator's configuration
problem and says which variable or file is missing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from .config import Secret
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
            raise ConfigError(
                [
                    Problem(
                        "(config)",
                        f"{key}.{file_key}",
                        f"cannot read {path}: {exc.strerror}",
                        "check the path and the file's permissions",
                    )
                ]
            ) from None
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


def credential_path(name: str, environ: Mapping[str, str]) -> Path:
    """A secret file's path: a relative name is looked up first among systemd's
    credentials ($CREDENTIALS_DIRECTORY), then as given."""
    path = Path(name)
    if not path.is_absolute() and environ.get("CREDENTIALS_DIRECTORY"):
        candidate = Path(environ["CREDENTIALS_DIRECTORY"]) / path
        if candidate.exists():
            return candidate
    return path
