"""Plans may cap what rolls over: at most so many tokens, or a percentage of the allowance.

Revision ID: 0014
Revises: 0013
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("plans", sa.Column("rollover_max_tokens", sa.BigInteger(), nullable=True))
    op.add_column("plans", sa.Column("rollover_max_percent", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("plans") as batch:
        batch.drop_column("rollover_max_percent")
        batch.drop_column("rollover_max_tokens")
