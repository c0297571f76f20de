"""The Actioner: the action outbox, bank entry states (disabled / review-only) and recent entry hits.

Review webhook deliveries move into the outbox: `review_items` loses its webhook columns, and every delivery
still pending becomes a `webhook` action, so an upgrade loses none.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

ByteText = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")
Id = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "actions",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("op", sa.Text, nullable=False),
        sa.Column("decision", sa.Text, nullable=True),
        sa.Column("job_id", sa.BigInteger, nullable=True),
        sa.Column("rule", sa.Text, nullable=True),
        sa.Column("subject_uri", ByteText, nullable=False),
        sa.Column("subject_cid", sa.Text, nullable=True),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("evidence", sa.JSON, nullable=True),
        sa.Column("notify", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.Float, nullable=False),
        sa.Column("lease_expires_at", sa.Float, nullable=True),
        sa.Column("outcome", sa.Text, nullable=True),
        sa.Column("detail", sa.Text, nullable=True),
        sa.Column("result", sa.JSON, nullable=True),
        sa.Column("reverses", sa.BigInteger, nullable=True),
        sa.Column("reversed_by", sa.BigInteger, nullable=True),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("dedupe_key", sa.Text, nullable=False, unique=True),
        sa.Column("created_at", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Text, nullable=False),
        sa.Column("finished_at", sa.Text, nullable=True),
    )
    op.create_index("actions_due", "actions", ["state", "next_attempt_at"])
    op.create_index("actions_subject", "actions", ["subject_uri", "id"])
    op.create_index("actions_decision", "actions", ["decision", "id"])
    op.create_table(
        "entry_states",
        sa.Column("bank", sa.Text, primary_key=True),
        sa.Column("entry_id", sa.Text, primary_key=True),
        sa.Column("mode", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("created_at", sa.Text, nullable=False),
    )
    op.create_table(
        "entry_hits",
        sa.Column("bank", sa.Text, primary_key=True),
        sa.Column("entry_id", sa.Text, primary_key=True),
        sa.Column("image", ByteText, primary_key=True),
        sa.Column("seen_at", sa.Float, nullable=False),
    )
    op.create_index("entry_hits_recent", "entry_hits", ["bank", "entry_id", "seen_at"])
    op.create_index("entry_hits_age", "entry_hits", ["seen_at"])
    _move_pending_webhooks()
    with op.batch_alter_table("review_items") as batch:
        batch.drop_index("review_items_webhook")
        batch.drop_column("webhook_state")
        batch.drop_column("webhook_attempts")
        batch.drop_column("webhook_next_at")


def _move_pending_webhooks() -> None:
    items = sa.table(
        "review_items",
        sa.column("id", sa.BigInteger),
        sa.column("subject_uri", sa.Text),
        sa.column("subject_cid", sa.Text),
        sa.column("job_id", sa.BigInteger),
        sa.column("webhook_state", sa.Text),
    )
    pending = op.get_bind().execute(sa.select(items).where(items.c.webhook_state == "pending")).all()
    if not pending:
        return
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    outbox = sa.table(
        "actions",
        *(sa.column(name, sa.Text) for name in ("kind", "op", "subject_uri", "subject_cid", "state", "actor")),
        *(sa.column(name, sa.Text) for name in ("dedupe_key", "created_at", "updated_at")),
        sa.column("job_id", sa.BigInteger),
        sa.column("params", sa.JSON),
        sa.column("next_attempt_at", sa.Float),
    )
    op.bulk_insert(
        outbox,
        [
            {
                "kind": "webhook", "op": "apply", "subject_uri": row.subject_uri, "subject_cid": row.subject_cid,
                "state": "pending", "actor": "pipeline", "dedupe_key": f"webhook|review.created|{row.id}",
                "created_at": stamp, "updated_at": stamp, "job_id": row.job_id,
                "params": {"event": "review.created", "review_item": row.id}, "next_attempt_at": time.time(),
            }
            for row in pending
        ],  # fmt: skip
    )


def downgrade() -> None:
    with op.batch_alter_table("review_items") as batch:
        batch.add_column(sa.Column("webhook_state", sa.Text, nullable=True))
        batch.add_column(sa.Column("webhook_attempts", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("webhook_next_at", sa.Float, nullable=True))
        batch.create_index("review_items_webhook", ["webhook_state", "webhook_next_at"])
    op.drop_table("entry_hits")
    op.drop_table("entry_states")
    op.drop_table("actions")
