"""Payment providers, each behind one small interface (`base.Provider`): start a payment for an
order, check that an event really came from the provider, and read a payment's state back from
the provider — the only state the product acts on (an event's own payload is never trusted).

    base.py    Checkout, PaymentState, Provider, and the errors
    stripe.py  cards through Stripe Checkout (the official SDK, its aiohttp client)

What a state does to an order and to the ledger is `solaris.operations.purchases`'.
"""
