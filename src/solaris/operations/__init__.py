"""The library every face calls (admin API, dashboard and portal pages, CLI): one audited
transaction per change, and the reads the faces show.

    core.py       `Operations`: users, credits, plans, keys, usage, statements, alerts, audit
    resources.py  what the operations need of a running gateway (or of a database alone)
    admins.py     admin accounts (argon2id) and admin API keys
    sessions.py   browser sessions of admins and portal users
    signin.py     admin sign-in: slowed brute force that locks nobody out (failures.py)
    clients.py    who a web client is: address, HTTPS, sign-in attempts per address
    reads.py      read queries: users, lots, keys, usage
    purchases.py  credit orders: started, and converged to what the provider says, once
    receipts.py   a paid order's receipt e-mail, written in the paying transaction
    orders.py     orders as the operator sees them: filters, detail, revenue, refunds
    order_views.py  what orders.py returns
    reconciler.py the background job that asks the providers again
    overview.py   the dashboard's overview figures
    views.py      what the operations return (pydantic models the API answers with)
"""
