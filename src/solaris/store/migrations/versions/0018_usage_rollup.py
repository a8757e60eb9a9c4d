"""Usage summed by quarter hour and model (#16): the reports by model, day and hour, the
dashboard's month and its 30-day chart read these sums instead of every usage row of the window
(bench/HISTORY.md). The mark starts at nothing read; the gateway's rollup catches up.

Revision ID: 0018
Revises: 0017
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SUMS = (
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "billable",
    "estimated",
)


def upgrade() -> None:
    id_type = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "usage_rollup",
        sa.Column("bucket", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in SUMS),
        sa.PrimaryKeyConstraint("bucket", "model", name=op.f("pk_usage_rollup")),
    )
    mark = op.create_table(
        "usage_rollup_mark",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("usage_id", id_type, nullable=False),
        sa.Column("seen_id", id_type, nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_usage_rollup_mark_one_row")),
        sa.CheckConstraint(
            "usage_id <= seen_id", name=op.f("ck_usage_rollup_mark_read_what_was_seen")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_rollup_mark")),
    )
    seen_at = datetime.now(UTC)
    if op.get_bind().dialect.name == "sqlite":
        seen_at = seen_at.replace(tzinfo=None)  # as solaris.store.columns.Timestamp stores it
    op.bulk_insert(mark, [{"id": 1, "usage_id": 0, "seen_id": 0, "seen_at": seen_at}])


def downgrade() -> None:
    op.drop_table("usage_rollup_mark")
    op.drop_table("usage_rollup")
