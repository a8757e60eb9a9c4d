"""The /v1 hot path, from a LibreChat request to its settled charge.

identity.py         who sent the request (LibreChat's headers, or a user API key);
                    identity_values.py checks each value once
admission.py        read, parse, identify, limit, estimate, reserve: a Ticket
proxy.py            one request end to end: admit, forward, relay, settle
recording.py        a finished request's usage row: counts, weights, prices
relay.py            the upstream's answer to the client, streamed event by event
upstream.py         the one HTTP client to the upstream (aiohttp)
block.py            the in-chat reply of a blocked user, with the buy link
models.py           GET /v1/models
responses.py        whole responses on a raw ASGI send
endpoints/          one module per API shape (chat, completions, embeddings, images,
                    speech, moderations, …): its body
                    checks, prompt estimate, usage, generated text and block reply
server_protocol.py  uvicorn's parser errors in OpenAI's shape
"""
