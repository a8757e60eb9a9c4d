"""One module per API shape the gateway meters, each behind the `Endpoint` interface (`base.py`):
its body checks, prompt estimate, completion cap, usage reading, generated text, what a blocked
request gets and its error shape. The proxy knows nothing of any shape; `ENDPOINTS` maps a
request path to its endpoint.

    base.py         the interface, and the OpenAI-shaped defaults the three below share
    chat.py         POST /v1/chat/completions (blocked LibreChat streams get an in-chat reply)
    completions.py  POST /v1/completions (legacy)
    embeddings.py   POST /v1/embeddings (no completion)
    responses.py    POST /v1/responses (OpenAI's Responses API; stored context held or refused)
    messages.py     POST /v1/messages (Anthropic's Messages API, in Anthropic's error shape)
    media.py        POST /v1/images/generations, /v1/audio/speech, /v1/moderations (a price
                    per image, per 1,000 characters, per request; held whole)
"""

from __future__ import annotations

from solaris.gateway.endpoints.base import Endpoint, Usage
from solaris.gateway.endpoints.chat import CHAT
from solaris.gateway.endpoints.completions import COMPLETIONS
from solaris.gateway.endpoints.embeddings import EMBEDDINGS
from solaris.gateway.endpoints.media import IMAGES, MODERATIONS, SPEECH
from solaris.gateway.endpoints.messages import MESSAGES
from solaris.gateway.endpoints.responses import RESPONSES

__all__ = ["ENDPOINTS", "Endpoint", "Usage"]

ENDPOINTS: dict[str, Endpoint] = {
    endpoint.path: endpoint
    for endpoint in (
        CHAT, COMPLETIONS, EMBEDDINGS, RESPONSES, MESSAGES, IMAGES, SPEECH, MODERATIONS,
    )
}  # fmt: skip
