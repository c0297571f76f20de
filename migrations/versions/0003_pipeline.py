"""Image pipeline: durable jobs, source cursors, embedded hash banks and their change log, the review queue.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ByteText = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")
Id = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "image_jobs",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("subject_uri", ByteText, nullable=False),
        sa.Column("subject_cid", ByteText, nullable=False, server_default=""),
        sa.Column("image_did", ByteText, nullable=False),
        sa.Column("blob_cid", ByteText, nullable=False),
        sa.Column("mime_type", sa.Text, nullable=True),
        sa.Column("status", sa.Text, nullable=False, server_default="queued"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.Float, nullable=False),
        sa.Column("lease_owner", sa.Text, nullable=True),
        sa.Column("lease_expires_at", sa.Float, nullable=True),
        sa.Column("outcome", sa.Text, nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("detail", sa.Text, nullable=True),
        sa.Column("pdq", sa.Text, nullable=True),
        sa.Column("quality", sa.Integer, nullable=True),
        sa.Column("variants", sa.JSON, nullable=True),
        sa.Column("result", sa.JSON, nullable=True),
        sa.Column("created_at", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Text, nullable=False),
        sa.Column("finished_at", sa.Text, nullable=True),
        sa.UniqueConstraint("subject_uri", "subject_cid", "blob_cid", name="image_jobs_subject_image"),
    )
    op.create_index("image_jobs_claim", "image_jobs", ["status", "next_attempt_at"])
    op.create_index("image_jobs_blob", "image_jobs", ["blob_cid"])
    op.create_table(
        "pipeline_cursors",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Text, nullable=False),
    )
    op.create_table(
        "hash_banks",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("name", sa.Text, nullable=False, unique=True),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("created_at", sa.Text, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "bank_entries",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("bank_id", Id, sa.ForeignKey("hash_banks.id", ondelete="CASCADE"), nullable=False),
        sa.Column("pdq", sa.Text, nullable=False),
        sa.Column("external_id", sa.Text, nullable=True),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("added_at", sa.Text, nullable=False),
        sa.UniqueConstraint("bank_id", "pdq", name="bank_entries_bank_pdq"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "bank_changes",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("bank", sa.Text, nullable=False),
        sa.Column("op", sa.Text, nullable=False),
        sa.Column("first_id", sa.BigInteger, nullable=True),
        sa.Column("last_id", sa.BigInteger, nullable=True),
        sa.Column("created_at", sa.Text, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "review_items",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.BigInteger, nullable=False),
        sa.Column("subject_uri", ByteText, nullable=False),
        sa.Column("subject_cid", sa.Text, nullable=True),
        sa.Column("vals", sa.JSON, nullable=False),
        sa.Column("evidence", sa.JSON, nullable=False),
        sa.Column("status", sa.Text, nullable=False, server_default="pending"),
        sa.Column("created_at", sa.Text, nullable=False),
        sa.Column("decided_by", sa.Text, nullable=True),
        sa.Column("decided_at", sa.Text, nullable=True),
        sa.Column("decision_note", sa.Text, nullable=True),
        sa.Column("webhook_state", sa.Text, nullable=True),
        sa.Column("webhook_attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("webhook_next_at", sa.Float, nullable=True),
        sa.Column("dedupe_key", sa.Text, nullable=False, unique=True),
    )
    op.create_index("review_items_status", "review_items", ["status", "id"])
    op.create_index("review_items_subject", "review_items", ["subject_uri", "id"])
    op.create_index("review_items_webhook", "review_items", ["webhook_state", "webhook_next_at"])


def downgrade() -> None:
    op.drop_table("review_items")
    op.drop_table("bank_changes")
    op.drop_table("bank_entries")
    op.drop_table("hash_banks")
    op.drop_table("pipeline_cursors")
    op.drop_table("image_jobs")
