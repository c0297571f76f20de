"""Tables of the moderator console (`labeler.console`). Created by migrations 0012, 0020 and 0022."""

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

# Bank imports started from the console (`labeler.console.imports`), so every serving process shows their
# progress. Times are epoch seconds; the process running an import renews `lease_expires_at` while it runs, so a
# row still `running` past it was left by a process that stopped.
console_imports = sa.Table(
    "console_imports",
    metadata,
    sa.Column("id", ByteText, primary_key=True),  # 16 hex digits, the status page's address
    sa.Column("bank", sa.Text, nullable=False),
    sa.Column("filename", sa.Text, nullable=False),
    sa.Column("signal_type", sa.Text, nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("total", sa.Integer, nullable=False),
    sa.Column("creates_bank", sa.Boolean, nullable=False),
    sa.Column("done", sa.Integer, nullable=False),
    sa.Column("landed", sa.Integer, nullable=False),
    sa.Column("state", sa.Text, nullable=False),  # running | done | failed | interrupted
    sa.Column("error", sa.Text, nullable=False),
    sa.Column("started_at", sa.Float, nullable=False, index=True),
    sa.Column("finished_at", sa.Float, nullable=True),
    sa.Column("lease_expires_at", sa.Float, nullable=False),
)
