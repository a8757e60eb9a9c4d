"""Alert delivery: a background worker takes what the ledger and the monitor wrote to the
outbox (`solaris.store.outbox`, in the transaction that raised it) and delivers it over e-mail
(SMTP) and signed webhooks. The threshold rules themselves are the ledger's
(`solaris.ledger.thresholds`).

    model.py      alert payloads and their dedupe keys
    render.py     the words of an alert, added when it is sent (a fresh portal link)
    deliverer.py  the worker: batches, retries with backoff and jitter, run_forever
    channels.py   the Channel protocol and DeliveryError
    mail.py       e-mail over smtplib (STARTTLS, TLS, plain) in a thread
    webhook.py    JSON POST signed with HMAC-SHA256
    monitor.py    system alerts: upstream error rate and latency per provider, stores down
    service.py    one process's alerting, from the settings, started and stopped with the app

Import from the modules: a package that imported the channels (aiohttp, smtplib) would make
every command start slower.
"""
