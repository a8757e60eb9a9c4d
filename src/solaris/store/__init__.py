"""Persistence: the schema, the database (SQLite or PostgreSQL) and the cache (Redis or memory)."""
