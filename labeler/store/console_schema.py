"""Tables of the moderator console (`labeler.console`). Created by migration 0012."""

from __future__ import annotations

import sqlalchemy as sa

from labeler.store.schema import ByteText, metadata

# People who may sign in to the console besides the operator: a name and a scrypt hash, never the credential.
console_moderators = sa.Table(
    "console_moderators",
    metadata,
    sa.Column("name", ByteText, primary_key=True),
    sa.Column("password_hash", sa.Text, nullable=False),  # labeler.console.passwords format
    sa.Column("created_at", sa.Text, nullable=False),
    sa.Column("created_by", sa.Text, nullable=False),
)
