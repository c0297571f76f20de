"""What the labeler keeps about review items handed to Altitude (`labeler.pipeline.actions.altitude`). Created by
migration 0014.

One row per review item sent: Altitude's ids for the target (the image), the signal (its hash) and the case (what
Altitude's moderators see), each written as soon as Altitude answers, so a retried hand-off resumes where the last
attempt stopped instead of sending the image again; and the decision read back (`BLOCK` / `APPROVE`, or `decided`
when our own moderators decided first, `gone` when Altitude lost the case). `polled_at` (epoch seconds) orders the
poller's rounds: the longest-unread case first.
"""

from __future__ import annotations

import sqlalchemy as sa

from labeler.store.schema import metadata

altitude_cases = sa.Table(
    "altitude_cases",
    metadata,
    sa.Column("review_item", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("target_id", sa.Text, nullable=True),
    sa.Column("signal_id", sa.Text, nullable=True),
    sa.Column("case_id", sa.Text, nullable=True),
    sa.Column("decision", sa.Text, nullable=True),
    sa.Column("polled_at", sa.Float, nullable=False, server_default="0"),
    sa.Column("created_at", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Text, nullable=False),
    sa.Index("altitude_cases_open", "decision", "polled_at"),
)
