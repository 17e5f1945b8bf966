"""reference_counters: the last reference number per prefix, raised in the transaction that
opens a conversation (references had been numbered after the message row's id, with gaps);
seeded with the highest number each prefix already has

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02
"""

import re

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_REFERENCE = re.compile(r"([A-Z0-9]{1,16})-([0-9]+)")


def upgrade() -> None:
    counters = op.create_table(
        "reference_counters",
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("last_number", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("prefix", name=op.f("pk_reference_counters")),
    )
    highest: dict[str, int] = {}
    for (reference,) in op.get_bind().execute(sa.text("SELECT reference FROM conversations")):
        found = _REFERENCE.fullmatch(reference or "")
        if found:
            prefix, number = found.group(1), int(found.group(2))
            highest[prefix] = max(highest.get(prefix, 0), number)
    if highest:
        op.bulk_insert(counters, [{"prefix": p, "last_number": n} for p, n in sorted(highest.items())])


def downgrade() -> None:
    op.drop_table("reference_counters")
