"""Labels: on SQLite, `seq` becomes the table's rowid; the unused `label_events_seq` index goes (both databases).

On SQLite only a column declared exactly `INTEGER PRIMARY KEY` is an alias of the rowid. `seq` was declared
BIGINT, so `labels` had a hidden rowid b-tree plus a separate unique index on `seq`: one b-tree more to write per
label, and every read in seq order (queryLabels `*`, stream backfill) went index → table. As the rowid, `seq`
orders the table itself. The table is rebuilt (Alembic batch mode: copy, drop, rename; data and indexes kept).
PostgreSQL keeps `seq BIGINT PRIMARY KEY`: nothing to do there.

`label_events_seq` served no query (the audit log is read by subject, `label_events_uri`), yet every label
action paid for it. bench/bench_writer.py measured both (see the writer's docstring for the figures).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _rebuild_labels_seq(new_type: sa.types.TypeEngine, old_type: sa.types.TypeEngine) -> None:
    # recreate="always": SQLite cannot change a column's type in place; batch mode copies the rows over in seq
    # order, then recreates labels_current_key and labels_uri_seq on the new table.
    with op.batch_alter_table("labels", recreate="always") as batch:
        batch.alter_column("seq", type_=new_type, existing_type=old_type, existing_nullable=False)


def upgrade() -> None:
    op.drop_index("label_events_seq", table_name="label_events")
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_labels_seq(sa.Integer(), sa.BigInteger())


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_labels_seq(sa.BigInteger(), sa.Integer())
    op.create_index("label_events_seq", "label_events", ["seq"])
