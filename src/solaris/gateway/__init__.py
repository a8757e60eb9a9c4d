"""The /v1 proxy: identity, upstream client, SSE relay, block replies."""
