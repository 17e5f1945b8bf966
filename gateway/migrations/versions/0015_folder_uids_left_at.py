"""an index on folder_uids (left_at, inbox, folder, uidvalidity): each folder sync reads
the UIDs still present (left_at NULL) without passing the ones that left over a year,
and retention deletes those that left before its cutoff

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

NAME = "ix_folder_uids_left_at_inbox_folder_uidvalidity"


def upgrade() -> None:
    with op.batch_alter_table("folder_uids", schema=None) as batch_op:
        batch_op.create_index(NAME, ["left_at", "inbox", "folder", "uidvalidity"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("folder_uids", schema=None) as batch_op:
        batch_op.drop_index(NAME)
