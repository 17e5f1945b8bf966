"""Loading history in bulk: rows of several tables at once, for benchmarks and tests.

Owns `load_history`, which writes complete rows (ids included, so that they can refer
to each other) table by table in the order the foreign keys need, one executemany per
table (per set of columns given), and on PostgreSQL moves each id sequence past the rows loaded. It decides
nothing about the rows; the gateway itself never calls it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import func, select, text

from .schema import metadata

__all__ = ["load_history"]


def load_history(conn: Any, rows: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
    """Insert `rows` (table name -> rows with every column they need) in one transaction
    of the caller's; an unknown table name is a ValueError."""
    unknown = set(rows) - set(metadata.tables)
    if unknown:
        raise ValueError(f"no such tables: {', '.join(sorted(unknown))}")
    for table in metadata.sorted_tables:
        batch = rows.get(table.name)
        if not batch:
            continue
        shapes: dict[frozenset[str], list[Mapping[str, Any]]] = {}
        for row in batch:  # one executemany per set of columns given
            shapes.setdefault(frozenset(row), []).append(row)
        for same in shapes.values():
            conn.execute(table.insert(), same)
        if conn.dialect.name == "postgresql" and "id" in table.c:
            top = conn.execute(select(func.max(table.c.id))).scalar()
            if top is not None:
                conn.execute(text("SELECT setval(pg_get_serial_sequence(:t, 'id'), :n)"),
                             {"t": table.name, "n": int(top)})  # fmt: skip
