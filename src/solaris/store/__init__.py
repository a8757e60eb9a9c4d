"""Persistence: the schema, the database (SQLite or PostgreSQL; driver errors become
`StoreUnavailable` here), migrations and the living copies of their SQL functions (sql/), the
identity cache (Redis or memory), the alert outbox and the audit log."""
