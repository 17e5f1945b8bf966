"""Message catalogs: the gettext translations of every sentence we write, per language.

Owns: where catalogs live (built in: `gateway/locale/<lang>/LC_MESSAGES/messages.po`; an
owner's: `<templates>/locale/<lang>/LC_MESSAGES/messages.po`), compiling a `.po` file into
an in-memory catalog the first time it is needed (a fresh clone needs no build step; a
changed file is read again), and the fallback chain, sentence by sentence: the owner's
catalog, then the built-in one, then the English msgid itself. The msgids are the English
sentences in the templates and in render.py; `make catalogs` extracts them (babel.cfg).
Pure apart from reading catalog files; it formats nothing itself.
"""

from __future__ import annotations

import gettext
from functools import lru_cache
from importlib.resources import files
from io import BytesIO
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

DOMAIN = "messages"
SOURCE_LANGUAGE = "en"  # the msgids are English


def builtin_locale() -> Path:
    """The directory holding the built-in catalogs (and messages.pot)."""
    return Path(str(files("gateway").joinpath("locale")))


def owner_locale(templates: str | None) -> Path | None:
    """The owner's catalogs: a `locale` directory beside their templates."""
    return Path(templates) / "locale" if templates else None


def catalog_file(root: Path, language: str) -> Path:
    return root / language / "LC_MESSAGES" / f"{DOMAIN}.po"


def _candidates(language: str) -> list[str]:
    """"pt_BR" is looked up as pt_BR, then pt."""
    base = language.replace("-", "_").split("_")[0]
    return [language] if base == language else [language, base]


def find_catalog(root: Path | None, language: str) -> Path | None:
    if root is None:
        return None
    for name in _candidates(language):
        path = catalog_file(root, name)
        if path.is_file():
            return path
    return None


def has_catalog(language: str, templates: str | None = None) -> bool:
    """Whether sentences in `language` can be translated (English always can: it is the
    source)."""
    if language.split("_")[0] == SOURCE_LANGUAGE:
        return True
    return any(find_catalog(root, language) for root in (owner_locale(templates), builtin_locale()))


def translations(language: str, templates: str | None = None) -> gettext.NullTranslations:
    """The catalog chain for `language`: the owner's, then the built-in one, then the
    English msgid (a `NullTranslations`) for any sentence neither translates."""
    result = gettext.NullTranslations()
    for root in (builtin_locale(), owner_locale(templates)):  # the last added answers first
        path = find_catalog(root, language)
        if path is not None:
            catalog = gettext.GNUTranslations(BytesIO(_compiled(str(path), path.stat().st_mtime_ns)))
            catalog.add_fallback(result)
            result = catalog
    return result


@lru_cache(maxsize=32)
def _compiled(path: str, mtime_ns: int) -> bytes:
    """A `.po` file compiled to `.mo` bytes in memory (cached until the file changes).
    Untranslated and fuzzy entries are left out, so gettext falls back for exactly those
    sentences."""
    with open(path, "rb") as handle:
        catalog = read_po(handle, domain=DOMAIN)
    buffer = BytesIO()
    write_mo(buffer, catalog, use_fuzzy=False)
    return buffer.getvalue()
