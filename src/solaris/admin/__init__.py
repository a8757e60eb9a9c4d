"""The admin side: the REST API under /api/admin (OpenAPI at /api/docs), admin accounts and
their sessions, the audit log, and the operations the API and the dashboard share."""
