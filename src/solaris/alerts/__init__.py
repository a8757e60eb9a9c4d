"""User and system alerts: written to an outbox in the transaction that raised them, delivered
by a background worker over e-mail (SMTP) and signed webhooks.

    model.py      alert rows and their typed payloads; threshold crossing; dedupe keys
    outbox.py     enqueue (caller's transaction), claim with a lease, record the outcome
    render.py     the words of a threshold alert, added when it is sent (fresh portal link)
    deliverer.py  the worker: batches, retries with backoff and jitter, run_forever
    channels.py   the Channel protocol and DeliveryError
    mail.py       e-mail over smtplib (STARTTLS, TLS, plain) in a thread
    webhook.py    JSON POST signed with HMAC-SHA256
    monitor.py    system alerts: upstream error rate and latency per provider, stores down
    service.py    one process's alerting, from the settings, started and stopped with the app

Import from the modules: the ledger needs `model` and `outbox` on every settle, and a package
that imported the channels (aiohttp, smtplib) would make every command start slower.
"""
