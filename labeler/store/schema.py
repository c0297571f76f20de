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
    # The stream sequence number and queryLabels cursor. Assigned by the writer, strictly increasing.
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("src", ByteText, nullable=False),
    sa.Column("uri", ByteText, nullable=False),
    # '' when the label has no cid, so (src, uri, cid, val) is a plain unique key on both databases.
    sa.Column("cid", ByteText, nullable=False, server_default=""),
    sa.Column("val", ByteText, nullable=False),
    sa.Column("neg", sa.Boolean, nullable=False),
    sa.Column("cts", sa.Text, nullable=False),
    sa.Column("exp", sa.Text, nullable=True),
    sa.Column("sig", sa.LargeBinary, nullable=False),
    sa.Column("key_id", sa.Text, nullable=False),
    sa.UniqueConstraint("src", "uri", "cid", "val", name="labels_current_key"),
    sa.Index("labels_uri_seq", "uri", "seq"),
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
    sa.Index("label_events_uri", "uri", "id"),
    sa.Index("label_events_seq", "seq"),
)
