"""Large histories (#16), measured by `bench/history.py` (figures and plans in bench/HISTORY.md):

- `usage.created_at`: the reads that select usage by time alone (the dashboard overview's today
  and this month, `usage_report` over a window, the 30-day charts) read the whole table without
  it.
- `ledger_entries (user_id, created_at)` also carries `amount` on PostgreSQL, so a statement's
  opening balance (the sum of a user's entries before the period) is an index-only scan instead
  of one heap page per entry: tens of thousands for a heavy user.

Revision ID: 0016
Revises: 0015
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ENTRIES_INDEX = "ix_ledger_entries_user_id_created_at"


def upgrade() -> None:
    op.create_index("ix_usage_created_at", "usage", ["created_at"])
    op.drop_index(ENTRIES_INDEX, table_name="ledger_entries")
    op.create_index(
        ENTRIES_INDEX, "ledger_entries", ["user_id", "created_at"], postgresql_include=["amount"]
    )


def downgrade() -> None:
    op.drop_index(ENTRIES_INDEX, table_name="ledger_entries")
    op.create_index(ENTRIES_INDEX, "ledger_entries", ["user_id", "created_at"])
    op.drop_index("ix_usage_created_at", table_name="usage")
