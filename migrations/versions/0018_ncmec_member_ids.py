"""NCMEC entries are recorded under `<member>-<entry>` ids (feedback needs the member): forget the records made
under bare entry ids and fetch NCMEC exchanges again from the start.

Records under the old ids would never meet NCMEC's later updates and deletions, which now come under the new ids,
so a withdrawn hash would stay banked. The bank entries themselves stay (matching goes on throughout); the next
fetch records every entry again under its new id, adding nothing twice. Feedback is not planned for matches on
entries banked before (their external id is the bare one), which the README says.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    ncmec = "SELECT name FROM exchanges WHERE type = 'ncmec'"
    op.execute(f"DELETE FROM exchange_entries WHERE exchange IN ({ncmec})")  # noqa: S608 (no input)
    op.execute("UPDATE exchanges SET checkpoint = NULL, next_fetch_at = NULL WHERE type = 'ncmec'")


def downgrade() -> None:
    """Nothing to undo: the records are made again by the next fetch, under whichever ids the code uses."""
