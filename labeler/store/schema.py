"""Table definitions. The schema itself is created and changed only by Alembic migrations (`migrations/`)."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# URIs compare bytewise on both databases: SQLite's BINARY collation, PostgreSQL's "C". That makes queryLabels
# case-sensitive and lets prefix patterns run as index range scans without LIKE escaping.
ByteText = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")

labels = sa.Table(
    "labels",
    metadata,
    # The stream sequence number and queryLabels cursor. Assigned by the writer, strictly increasing. On SQLite the
    # rowid (only a column typed exactly INTEGER is), so the table itself is in seq order (migration 0005).
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=False),
    sa.Column("src", ByteText, nullable=False),
    sa.Column("uri", ByteText, nullable=False),
    # '' when the label has no cid, so (uri, src, cid, val) is a plain unique key on both databases.
    sa.Column("cid", ByteText, nullable=False, server_default=""),
    sa.Column("val", ByteText, nullable=False),
    sa.Column("neg", sa.Boolean, nullable=False),
    sa.Column("cts", sa.Text, nullable=False),
    sa.Column("exp", sa.Text, nullable=True),
    sa.Column("sig", sa.LargeBinary, nullable=False),
    sa.Column("key_id", sa.Text, nullable=False),
    # The current-state key, led by the URI so that it also serves queryLabels' URI lookups (migration 0006).
    sa.Index("labels_current_key", "uri", "src", "cid", "val", unique=True),
    # `sources` with `*`: one seek per source, rows in seq order; inserts append (seqs only grow).
    sa.Index("labels_src_seq", "src", "seq"),
)

# Append-only history of every label action, with who did it and why (design.md invariant 3).
label_events = sa.Table(
    "label_events",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.Text, nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("via", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("src", ByteText, nullable=False),
    sa.Column("uri", ByteText, nullable=False),
    sa.Column("cid", ByteText, nullable=False, server_default=""),
    sa.Column("val", ByteText, nullable=False),
    sa.Column("neg", sa.Boolean, nullable=False),
    sa.Column("cts", sa.Text, nullable=False),
    sa.Column("exp", sa.Text, nullable=True),
    sa.Column("evidence", sa.JSON, nullable=True),
    sa.Index("label_events_uri", "uri", "id"),  # the only index besides the id: no query looks events up by seq
)

# Reports (createReport) and the moderation queue; see labeler/reports/. Status: open → actioned | dismissed.
reports = sa.Table(
    "reports",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("created_at", sa.Text, nullable=False),
    sa.Column("reported_by", ByteText, nullable=False),
    sa.Column("reason_type", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("subject_type", sa.Text, nullable=False),  # account | record
    sa.Column("subject_uri", ByteText, nullable=False),  # the DID for an account, the at:// URI for a record
    sa.Column("subject_did", ByteText, nullable=False),
    sa.Column("subject_cid", sa.Text, nullable=True),
    sa.Column("mod_tool", sa.JSON, nullable=True),
    sa.Column("status", sa.Text, nullable=False, server_default="open"),
    sa.Column("resolved_by", sa.Text, nullable=True),
    sa.Column("resolved_at", sa.Text, nullable=True),
    sa.Column("note", sa.Text, nullable=True),
    sa.Index("reports_subject", "subject_uri", "id"),
    sa.Index("reports_status", "status", "id"),
    sa.Index("reports_reporter", "reported_by", "id"),
)

# One row per reported subject: the queue entry grouping its reports (Ozone's subject status).
report_subjects = sa.Table(
    "report_subjects",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("subject_uri", ByteText, nullable=False, unique=True),
    sa.Column("subject_did", ByteText, nullable=False),
    sa.Column("subject_type", sa.Text, nullable=False),
    sa.Column("subject_cid", sa.Text, nullable=True),  # of the latest report
    sa.Column("report_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("open_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("open_appeal_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Text, nullable=False),
    sa.Column("last_report_id", sa.BigInteger, nullable=False),  # recency order and the queryStatuses cursor
    sa.Column("last_reported_at", sa.Text, nullable=False),
    sa.Column("last_reviewed_by", sa.Text, nullable=True),
    sa.Column("last_reviewed_at", sa.Text, nullable=True),
    sa.Column("last_appealed_at", sa.Text, nullable=True),
    sa.Column("comment", sa.Text, nullable=True),
    sa.Index("report_subjects_recency", "last_report_id"),
)

# Append-only audit of the queue: every report received and every moderator action, with who did it.
moderation_events = sa.Table(
    "moderation_events",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("created_at", sa.Text, nullable=False),
    sa.Column("event_type", sa.Text, nullable=False),  # the event's $type
    sa.Column("event", sa.JSON, nullable=False),
    sa.Column("subject_type", sa.Text, nullable=False),
    sa.Column("subject_uri", ByteText, nullable=False),
    sa.Column("subject_did", ByteText, nullable=False),
    sa.Column("subject_cid", sa.Text, nullable=True),
    sa.Column("created_by", ByteText, nullable=False),  # the DID shown as createdBy
    sa.Column("actor", sa.Text, nullable=False),  # who authenticated: admin, cli, or a moderator's DID
    sa.Column("report_id", sa.BigInteger, nullable=True),
    sa.Column("mod_tool", sa.JSON, nullable=True),
    sa.Index("moderation_events_subject", "subject_uri", "id"),
    sa.Index("moderation_events_created_by", "created_by", "id"),
)

# Service tokens already used (createReport, moderators), each remembered until it expires, so that no process
# accepts one twice, before or after a restart (labeler.store.token_uses).
service_token_uses = sa.Table(
    "service_token_uses",
    metadata,
    sa.Column("iss", ByteText, nullable=False),
    sa.Column("token_id", ByteText, nullable=False),  # jti:<jti> or sha256:<hex> (labeler.protocol.service_auth)
    sa.Column("expires_at", sa.Float, nullable=False),  # Unix seconds
    sa.PrimaryKeyConstraint("iss", "token_id", name="service_token_uses_pkey"),
    sa.Index("service_token_uses_expires_at", "expires_at"),
)

# Failed sign-ins per (scope, key) in the window that ends at expires_at, shared by every serving process
# (labeler.store.login_failures); rows past their window or beyond a cap are pruned.
login_failures = sa.Table(
    "login_failures",
    metadata,
    sa.Column("scope", ByteText, nullable=False),  # which allowance: api, console-client, console-name
    sa.Column("key", ByteText, nullable=False),  # a client (labeler.xrpc.clients) or a sign-in name
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),  # Unix seconds
    sa.PrimaryKeyConstraint("scope", "key", name="login_failures_pkey"),
    sa.Index("login_failures_expires_at", "expires_at"),
)

# One row (id 1): the signing hold and the key generation every label commit checks under the sequencing lock
# (labeler.store.signing_state). No row means no hold and generation 0.
signing_state = sa.Table(
    "signing_state",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("held_until", sa.Float, nullable=True),  # Unix seconds; NULL: signing is not held
    sa.Column("generation", sa.BigInteger, nullable=False, server_default="0"),  # bumped by each key switch
)
