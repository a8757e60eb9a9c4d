"""The admin side: the REST API under /api/admin (OpenAPI at /api/docs), admin accounts and
their sessions, the audit log, and the operations the API, the dashboard and the CLI share.

    operations.py  what an admin can do: reads, and changes written with their audit row
    reads.py       the read queries behind it (users, lots, keys, usage, plans)
    overview.py    the dashboard's overview: database figures plus this process's metrics
    views.py       the pydantic models operations return (the API answers with them as is)
    resources.py   what operations need of a gateway; the CLI's stand-in
    audit.py       the append-only audit log: Actor, record, entries
    admins.py      admin accounts (argon2id) and admin API keys (sk-adm-…)
    sessions.py    browser sessions (admin and portal user), stored as token hashes
    auth.py        who calls the API: admin JWT or admin API key; sign-in rate limits
    inputs.py      the API's request bodies and parameter types, all bounded
    routes.py      the API's resources; api.py the FastAPI app, errors and sign-in
"""
