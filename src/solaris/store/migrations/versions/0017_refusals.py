"""Refused requests, for the statement: why (no balance, a usage window, a cap) and what the user
was told, at most one a reason a minute per user.

Revision ID: 0017
Revises: 0016
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    id_type = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "refusals",
        sa.Column("id", id_type, autoincrement=True, nullable=False),
        sa.Column("user_id", id_type, nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("dedupe_key", sa.String(length=96), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_refusals_user_id")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refusals")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_refusals_dedupe_key")),
    )
    op.create_index("ix_refusals_user_id_created_at", "refusals", ["user_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_refusals_user_id_created_at", table_name="refusals")
    op.drop_table("refusals")
