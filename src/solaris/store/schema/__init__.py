"""The tables, in SQLAlchemy Core. Migrations (store/migrations) create exactly these.

Token amounts are integers ("billable tokens"). `ledger_entries` and `usage` are append-only:
triggers refuse UPDATE and DELETE on them, so a balance is always explainable by its entries.
`accounts.balance` is the running sum of a user's entries, kept in the same transaction as each
entry; `accounts.reserved` is the sum of the user's pending reservations.

Declared by concern in the modules of this package, on one `metadata`; import them from here.
"""

from solaris.store.schema.ledger import (
    ENTRIES_BY_USER,
    ENTRY_KINDS,
    RESERVATION_STATES,
    ROLLUP_SUMS,
    accounts,
    ledger_entries,
    lots,
    refusals,
    reservations,
    usage,
    usage_rollup,
    usage_rollup_mark,
    users,
)
from solaris.store.schema.meta import metadata
from solaris.store.schema.operator import (
    ALERT_STATES,
    admin_api_keys,
    admins,
    alert_outbox,
    api_keys,
    audit_log,
    deployment,
    used_links,
    web_sessions,
)
from solaris.store.schema.orders import ORDER_STATES, PAYMENT_PROVIDERS, orders, payment_events
from solaris.store.schema.plans import plan_changes, plans, subscriptions

__all__ = [
    "ALERT_STATES", "ENTRIES_BY_USER", "ENTRY_KINDS", "ORDER_STATES", "PAYMENT_PROVIDERS",
    "RESERVATION_STATES", "ROLLUP_SUMS", "accounts", "admin_api_keys", "admins", "alert_outbox",
    "api_keys", "audit_log", "deployment", "ledger_entries", "lots", "metadata", "orders",
    "payment_events", "plan_changes", "plans", "refusals", "reservations", "subscriptions",
    "usage", "usage_rollup", "usage_rollup_mark", "used_links", "users", "web_sessions",
]  # fmt: skip
