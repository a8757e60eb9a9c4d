"""Plans, subscriptions and the record of plan changes.

Users that existed before plans are put on a plan named "default"; `solaris migrate` and the
gateway's start-up then give that plan its settings (SOLARIS_DEFAULT_ALLOWANCE_TOKENS or the YAML).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 01:47:28.970036
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "plans",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("allowance_tokens", sa.BigInteger(), nullable=False),
        sa.Column("period", sa.String(length=16), nullable=False),
        sa.Column("anchor", sa.String(length=16), nullable=False),
        sa.Column("rpm", sa.Integer(), nullable=True),
        sa.Column("tpm", sa.Integer(), nullable=True),
        sa.Column("models", sa.Text(), nullable=False),
        sa.Column("weights", sa.Text(), nullable=False),
        sa.Column("rollover", sa.Boolean(), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "anchor IN ('subscription', 'calendar')", name=op.f("ck_plans_anchor_known")
        ),
        sa.CheckConstraint(
            "period IN ('monthly', 'weekly', 'daily')", name=op.f("ck_plans_period_known")
        ),
        sa.CheckConstraint("allowance_tokens >= 0", name=op.f("ck_plans_allowance_not_negative")),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_plans")),
    )
    op.create_table(
        "plan_changes",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("from_plan", sa.String(length=64), nullable=True),
        sa.Column("to_plan", sa.String(length=64), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("changed_by", sa.String(length=128), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_plan_changes_user_id")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plan_changes")),
    )
    op.create_table(
        "subscriptions",
        sa.Column("user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("plan_name", sa.String(length=64), nullable=False),
        sa.Column("anchored_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["plan_name"], ["plans.name"], name=op.f("fk_subscriptions_plan_name")
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_subscriptions_user_id")),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_subscriptions")),
    )
    op.execute(
        "INSERT INTO plans (name, allowance_tokens, period, anchor, models, weights, rollover,"
        " is_default, updated_at) SELECT 'default', 0, 'monthly', 'subscription', '[\"*\"]', '{}',"
        " false, true, CURRENT_TIMESTAMP WHERE EXISTS (SELECT 1 FROM users)"
    )
    op.execute(
        "INSERT INTO subscriptions (user_id, plan_name, anchored_at, changed_at)"
        " SELECT id, 'default', created_at, created_at FROM users"
    )


def downgrade() -> None:
    op.drop_table("subscriptions")
    op.drop_table("plan_changes")
    op.drop_table("plans")
