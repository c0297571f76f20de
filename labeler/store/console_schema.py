"""Tables of the moderator console (`labeler.console`). Created by migrations 0012 and 0020."""

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

# Each console user's own settings, by session name (`admin` or a moderator's name): how images are hidden.
console_preferences = sa.Table(
    "console_preferences",
    metadata,
    sa.Column("user_name", ByteText, primary_key=True),
    sa.Column("wellness", sa.Text, nullable=False),  # labeler.console.preferences.WELLNESS
    sa.Column("updated_at", sa.Text, nullable=False),
)
