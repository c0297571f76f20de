"""Tables of the Actioner (`labeler.pipeline.actions`): the action outbox and what false positives and floods
change about bank entries. Created by migration 0008.

Times workers compare (`next_attempt_at`, `lease_expires_at`, `seen_at`) are epoch seconds as floats, like the
job queue's; times shown to people are RFC 3339 text.
"""

from __future__ import annotations

import sqlalchemy as sa

from labeler.store.pipeline_schema import Id
from labeler.store.schema import ByteText, metadata

# The outbox: every action is a row before it is attempted, and keeps its outcome and its reversal afterwards.
actions = sa.Table(
    "actions",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.Text, nullable=False),  # label | review | takedown | report | webhook
    sa.Column("op", sa.Text, nullable=False),  # apply | reverse
    sa.Column("decision", sa.Text, nullable=True),  # groups the actions one policy decision took: "job:7:rule"
    sa.Column("job_id", sa.BigInteger, nullable=True),
    sa.Column("rule", sa.Text, nullable=True),
    sa.Column("subject_uri", ByteText, nullable=False),
    sa.Column("subject_cid", sa.Text, nullable=True),
    sa.Column("params", sa.JSON, nullable=False),  # what the kind needs: values, the takedown subject, the event…
    sa.Column("evidence", sa.JSON, nullable=True),
    sa.Column("notify", sa.Boolean, nullable=False, server_default=sa.false()),  # outcome goes to the webhook
    sa.Column("state", sa.Text, nullable=False),  # pending | running | done | skipped | failed | cancelled
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", sa.Float, nullable=False),
    sa.Column("lease_expires_at", sa.Float, nullable=True),
    sa.Column("outcome", sa.Text, nullable=True),  # stable code: applied, lifted, already, http-401, gave-up, …
    sa.Column("detail", sa.Text, nullable=True),  # for people; while pending, the last retryable failure
    sa.Column("result", sa.JSON, nullable=True),  # what the kind reports back (review item id, report id, seqs)
    sa.Column("reverses", sa.BigInteger, nullable=True),  # op reverse: the action it undoes
    sa.Column("reversed_by", sa.BigInteger, nullable=True),  # op apply: the reversal, once one was asked for
    sa.Column("actor", sa.Text, nullable=False),  # pipeline, cli, admin, a moderator's DID
    sa.Column("dedupe_key", sa.Text, nullable=False, unique=True),  # one row per intent, however often asked
    sa.Column("created_at", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Text, nullable=False),
    sa.Column("finished_at", sa.Text, nullable=True),
    sa.Index("actions_due", "state", "next_attempt_at"),
    sa.Index("actions_subject", "subject_uri", "id"),
    sa.Index("actions_decision", "decision", "id"),
)

# Bank entries switched off for matching: `disabled` (a false positive) or `review-only` (flood control, or an
# operator's choice). Keyed by bank name and entry id as matches carry them, so it works for both matchers.
entry_states = sa.Table(
    "entry_states",
    metadata,
    sa.Column("bank", sa.Text, primary_key=True),
    sa.Column("entry_id", sa.Text, primary_key=True),
    sa.Column("mode", sa.Text, nullable=False),  # disabled | review-only
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("created_at", sa.Text, nullable=False),
)

# Every change of an entry's state (disabled, review-only, or `clear`: back to matching), who made it, through
# what (console, cli, api, altitude, pipeline for flood control) and why: the audit log the states table, which
# keeps only the current state and forgets a cleared one, cannot be. Created by migration 0021.
entry_state_changes = sa.Table(
    "entry_state_changes",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("bank", sa.Text, nullable=False),
    sa.Column("entry_id", sa.Text, nullable=False),
    sa.Column("mode", sa.Text, nullable=False),  # disabled | review-only | clear
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("via", sa.Text, nullable=True),  # NULL when the caller did not say (a decision without a via)
    sa.Column("created_at", sa.Text, nullable=False),
    sqlite_autoincrement=True,
)

# Distinct images each bank entry matched recently, for flood control; rows older than the window are pruned.
entry_hits = sa.Table(
    "entry_hits",
    metadata,
    sa.Column("bank", sa.Text, primary_key=True),
    sa.Column("entry_id", sa.Text, primary_key=True),
    sa.Column("image", ByteText, primary_key=True),  # the blob CID
    sa.Column("seen_at", sa.Float, nullable=False),
    sa.Index("entry_hits_recent", "bank", "entry_id", "seen_at"),
    sa.Index("entry_hits_age", "seen_at"),
)
