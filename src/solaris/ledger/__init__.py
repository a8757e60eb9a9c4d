"""The money rules, stated once: every balance change is a ledger entry, every served request
one usage row written with its charge.

    records.py      what the request path takes and gives: usage, a hold, a settle's outcome
    pending.py      pending transfers: reserve, settle, release, expire (the Pending protocol,
                    and its SQLite implementation)
    postgres.py     the same protocol on PostgreSQL, one SQL function call each
    ledger.py       the book: credits, deductions, balances, period refresh
    plans.py  periods.py  lots.py  thresholds.py  statement.py  verify.py  users.py
    journal.py  settlements.py   settlements written to a local journal while the database is
                                 away, replayed once it answers
"""
