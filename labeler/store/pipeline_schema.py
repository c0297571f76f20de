"""Tables of the image pipeline: durable jobs, report intake, source cursors, embedded hash banks, the review queue.

Created by migrations 0003, 0004 (`report_intake`), 0007 (signal types, `bank_signals`, `image_jobs.signals`),
0010 (`image_jobs.media`) and 0011 (`pipeline_cursors.event_time`); 0008 moved review webhooks into the action
outbox. Times that workers compare (`next_attempt_at`, `lease_expires_at`) are epoch seconds as floats so both
databases compare them numerically; times shown to people are RFC 3339 text like elsewhere.
"""

from __future__ import annotations

import sqlalchemy as sa

from labeler.store.schema import ByteText, metadata

Id = sa.BigInteger().with_variant(sa.Integer, "sqlite")

# One row per (subject, image): written before anything is fetched (design.md invariant 6).
image_jobs = sa.Table(
    "image_jobs",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("source", sa.Text, nullable=False),  # firehose | jetstream | report | upload | manual
    sa.Column("subject_uri", ByteText, nullable=False),
    sa.Column("subject_cid", ByteText, nullable=False, server_default=""),  # '' when none, for the unique key
    sa.Column("image_did", ByteText, nullable=False),
    sa.Column("blob_cid", ByteText, nullable=False),
    sa.Column("mime_type", sa.Text, nullable=True),
    sa.Column("media", sa.Text, nullable=False, server_default="image"),  # image | video, as the record's embed says
    sa.Column("status", sa.Text, nullable=False, server_default="queued"),  # queued | running | done
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", sa.Float, nullable=False),
    sa.Column("lease_owner", sa.Text, nullable=True),
    sa.Column("lease_expires_at", sa.Float, nullable=True),
    sa.Column("outcome", sa.Text, nullable=True),  # no-match | match | rejected | error
    sa.Column("reason", sa.Text, nullable=True),  # stable code, e.g. low-quality, cid-mismatch, truncated
    sa.Column("detail", sa.Text, nullable=True),  # for people; also the last retryable error while queued
    sa.Column("pdq", sa.Text, nullable=True),  # kept once computed, so a retry after a matcher outage skips fetch
    sa.Column("quality", sa.Integer, nullable=True),
    sa.Column("variants", sa.JSON, nullable=True),
    # Exact hashes {"md5", "sha256"}, a video's {"vpdq": [features], "video": {probe}}, and {"rejected": {reason,
    # detail}} when no perceptual hash could be made.
    sa.Column("signals", sa.JSON, nullable=True),
    sa.Column("result", sa.JSON, nullable=True),  # matches and the decisions taken on them
    sa.Column("created_at", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Text, nullable=False),
    sa.Column("finished_at", sa.Text, nullable=True),
    sa.UniqueConstraint("subject_uri", "subject_cid", "blob_cid", name="image_jobs_subject_image"),
    sa.Index("image_jobs_claim", "status", "next_attempt_at"),
    sa.Index("image_jobs_blob", "blob_cid"),
)

# Where each source stopped (firehose seq, Jetstream time_us, …), so a restart resumes without a gap.
pipeline_cursors = sa.Table(
    "pipeline_cursors",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Text, nullable=False),
    sa.Column("event_time", sa.Float, nullable=True),  # epoch seconds of the event at `value`, when it says (0011)
)

hash_banks = sa.Table(
    "hash_banks",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),
    sa.Column("note", sa.Text, nullable=True),
    sa.Column("created_at", sa.Text, nullable=False),
    sa.Column("signal_type", sa.Text, nullable=False, server_default="pdq"),  # every entry is a hash of this type
    sqlite_autoincrement=True,  # ids never reused, so a re-created bank is a new bank to every process
)

bank_entries = sa.Table(
    "bank_entries",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("bank_id", Id, sa.ForeignKey("hash_banks.id", ondelete="CASCADE"), nullable=False),
    sa.Column("pdq", sa.Text, nullable=False),
    sa.Column("external_id", sa.Text, nullable=True),
    sa.Column("note", sa.Text, nullable=True),
    sa.Column("added_at", sa.Text, nullable=False),
    sa.UniqueConstraint("bank_id", "pdq", name="bank_entries_bank_pdq"),
    sqlite_autoincrement=True,
)

# Entries of banks whose signal type is not PDQ (the PDQ index loads `bank_entries` alone). `value_key` is the value
# for exact hashes and a SHA-256 of it for long signals, so (bank, value) stays unique within a btree's key size.
bank_signals = sa.Table(
    "bank_signals",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("bank_id", Id, sa.ForeignKey("hash_banks.id", ondelete="CASCADE"), nullable=False),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("value_key", sa.Text, nullable=False),
    sa.Column("external_id", sa.Text, nullable=True),
    sa.Column("note", sa.Text, nullable=True),
    sa.Column("added_at", sa.Text, nullable=False),
    sa.UniqueConstraint("bank_id", "value_key", name="bank_signals_bank_value"),
    sqlite_autoincrement=True,
)

# Append-only log of bank changes; every process replays it into its in-memory index (committed in id order).
bank_changes = sa.Table(
    "bank_changes",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("bank", sa.Text, nullable=False),
    sa.Column("op", sa.Text, nullable=False),  # add (entries first_id..last_id) | remove (entry first_id) | drop
    sa.Column("first_id", sa.BigInteger, nullable=True),
    sa.Column("last_id", sa.BigInteger, nullable=True),
    sa.Column("created_at", sa.Text, nullable=False),
    sa.Column("signal_type", sa.Text, nullable=False, server_default="pdq"),  # whose table first_id..last_id are in
    # who dropped the bank or imported the entries (cli, admin); NULL for other changes
    sa.Column("actor", sa.Text, nullable=True),
    sqlite_autoincrement=True,
)

review_items = sa.Table(
    "review_items",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.BigInteger, nullable=False),
    sa.Column("subject_uri", ByteText, nullable=False),
    sa.Column("subject_cid", sa.Text, nullable=True),
    sa.Column("vals", sa.JSON, nullable=False),
    sa.Column("evidence", sa.JSON, nullable=False),
    sa.Column("status", sa.Text, nullable=False, server_default="pending"),  # pending | confirmed | rejected
    sa.Column("created_at", sa.Text, nullable=False),
    sa.Column("decided_by", sa.Text, nullable=True),
    sa.Column("decided_via", sa.Text, nullable=True),  # console | cli | api | altitude (migration 0019)
    sa.Column("decided_at", sa.Text, nullable=True),
    sa.Column("decision_note", sa.Text, nullable=True),
    sa.Column("dedupe_key", sa.Text, nullable=False, unique=True),  # one item per job, subject and values
    sa.Index("review_items_status", "status", "id"),
    sa.Index("review_items_subject", "subject_uri", "id"),
)

# A reported subject whose record is still to be fetched (migration 0004): the report listener writes it, workers
# drain it, so a PDS outage or a restart between report and fetch loses no work. One row per (subject, cid).
report_intake = sa.Table(
    "report_intake",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("subject_uri", ByteText, nullable=False),  # at:// URI of a record, or the DID of an account
    sa.Column("subject_cid", ByteText, nullable=False, server_default=""),  # '' for an account
    sa.Column("report_id", sa.BigInteger, nullable=False),  # the latest report that (re)queued it
    sa.Column("status", sa.Text, nullable=False, server_default="queued"),  # queued | done
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", sa.Float, nullable=False),  # a claim pushes it one lease ahead
    sa.Column("reason", sa.Text, nullable=True),  # when done: queued | no-images | gave-up | <fetch reason>
    sa.Column("detail", sa.Text, nullable=True),  # the last error
    sa.Column("created_at", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Text, nullable=False),
    sa.UniqueConstraint("subject_uri", "subject_cid", name="report_intake_subject"),
    sa.Index("report_intake_claim", "status", "next_attempt_at"),
)
