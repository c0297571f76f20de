"""Labels: one index keyed by subject URI instead of two, so a label write dirties one random page fewer.

A new label goes into every index on `labels`. Subject URIs arrive in no order, so each insert into an index keyed
by URI lands on a page of its own, and every such page is written whole to the log (SQLite's WAL, PostgreSQL's).
The table had two: the current-state key (src, uri, cid, val) and `labels_uri_seq` (uri, seq) for queryLabels.

- `labels_current_key` becomes a unique index on (uri, src, cid, val): the same key led by the URI, so that it
  also serves queryLabels' URI lookups; `labels_uri_seq` goes.
- `labels_src_seq` (src, seq) is new. Nearly every label has this labeler's own DID and seqs only grow, so its
  inserts land on the last page. It answers `*` with `sources` as one seek per source in seq order (the old key
  led with src only so that a source with no labels could be found out with one seek).

Measured on SQLite with bench_writer's callers (62k labels in the table, four runs each, alternating): a
1,000-label commit took 42–48 ms instead of 47–78 ms. On SQLite the table is rebuilt (batch mode) to drop the old
table constraint: ~13 s for 1M labels.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("labels", recreate="always") as batch:
            batch.drop_constraint("labels_current_key", type_="unique")
            batch.drop_index("labels_uri_seq")
    else:
        op.drop_constraint("labels_current_key", "labels", type_="unique")
        op.drop_index("labels_uri_seq", table_name="labels")
    op.create_index("labels_current_key", "labels", ["uri", "src", "cid", "val"], unique=True)
    op.create_index("labels_src_seq", "labels", ["src", "seq"])


def downgrade() -> None:
    op.drop_index("labels_src_seq", table_name="labels")
    op.drop_index("labels_current_key", table_name="labels")
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("labels", recreate="always") as batch:
            batch.create_unique_constraint("labels_current_key", ["src", "uri", "cid", "val"])
            batch.create_index("labels_uri_seq", ["uri", "seq"])
    else:
        op.create_unique_constraint("labels_current_key", "labels", ["src", "uri", "cid", "val"])
        op.create_index("labels_uri_seq", "labels", ["uri", "seq"])
