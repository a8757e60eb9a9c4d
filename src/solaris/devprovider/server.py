"""A local stand-in for OpenAI's API (and Anthropic's /v1/messages), as a raw ASGI app:
deterministic replies, exact usage.

Generation routes answer `reply_tokens` tokens of fixed text, cut to the request's completion
cap, with prompt_tokens counted the way OpenAI counts them. Faults and slowness come from a
`Behaviour`, overridable per request by a body field `"dev_provider": {...}`; they apply to the
generation routes only (chat, completions, embeddings, responses in `responses.py`, messages in
`messages.py`, images, speech and moderations in `media.py`). GET /_dev/requests lists the last requests to /v1 (method, path, query,
headers, parsed body); DELETE /_dev/requests clears it and restarts the fail_rate count.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import deque
from collections.abc import Callable

import orjson
import uvicorn
from starlette.types import Receive, Scope, Send
from uvicorn.config import STARTUP_FAILURE

from solaris.devprovider import media, request, shapes
from solaris.devprovider.messages import messages
from solaris.devprovider.request import Behaviour, Invalid, Json
from solaris.devprovider.responses import responses
from solaris.devprovider.shapes import Reply
from solaris.metering import estimate, tokenizer

__all__ = ["MODELS", "RECORDED", "Behaviour", "DevProvider", "build_app", "run", "server_config"]

MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4", "gpt-3.5-turbo", "text-embedding-3-small")
RECORDED = 200
_LEGACY_MAX_TOKENS = 16  # what /v1/completions generates when the request sets no cap
_EMBEDDING_DIMENSIONS = 8
_SSE = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]

# A prepared answer: a JSON body, or every event of a stream.
Answer = bytes | list[bytes]
Endpoint = Callable[[Json, Behaviour, str], Answer]


class DevProvider:
    """The ASGI app. Not thread-safe: serve it from one event loop."""

    def __init__(self, defaults: Behaviour) -> None:
        self.defaults = defaults
        self.requests: deque[Json] = deque(maxlen=RECORDED)
        self.counted = 0  # generation requests, for fail_rate
        self._endpoints: dict[str, Endpoint] = {
            "/v1/chat/completions": _chat,
            "/v1/completions": _completion,
            "/v1/embeddings": _embeddings,
            "/v1/responses": responses,
            "/v1/messages": messages,
            "/v1/images/generations": media.images,
            "/v1/audio/speech": media.speech,
            "/v1/moderations": media.moderations,
        }
        self._models = {
            name: {"id": name, "object": "model", "created": 1_700_000_000, "owned_by": "system"}
            for name in MODELS
        }
        self._model_list = orjson.dumps({"object": "list", "data": list(self._models.values())})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # run() turns lifespan off; websockets are not served
        method: str = scope["method"]
        path: str = scope["path"]
        raw = await _read_body(receive)
        if path == "/health":
            await _send_json(send, 200, b'{"status":"ok"}')
        elif path == "/_dev/requests" and method == "GET":
            await _send_json(send, 200, orjson.dumps(list(self.requests)))
        elif path == "/_dev/requests" and method == "DELETE":
            self.requests.clear()
            self.counted = 0
            await _send_json(send, 200, b'{"deleted":true}')
        elif path.startswith("/v1/"):
            parsed = request.loads(raw) if raw else None
            self.requests.append(_record(scope, parsed))
            await self._api(method, path, parsed, receive, send)
        else:
            await _send_json(send, 404, _invalid_url(method, path))

    async def _api(
        self, method: str, path: str, parsed: object, receive: Receive, send: Send
    ) -> None:
        endpoint = self._endpoints.get(path) if method == "POST" else None
        if endpoint is not None:
            await self._generate(endpoint, parsed, receive, send)
        elif method == "GET" and path == "/v1/models":
            await _send_json(send, 200, self._model_list)
        elif method == "GET" and path.startswith("/v1/models/"):
            name = path.removeprefix("/v1/models/")
            model = self._models.get(name)
            if model is None:
                error = request.error(
                    f"The model '{name}' does not exist", "model", "model_not_found"
                )
                await _send_json(send, 404, error)
            else:
                await _send_json(send, 200, orjson.dumps(model))
        else:
            await _send_json(send, 404, _invalid_url(method, path))

    async def _generate(
        self, endpoint: Endpoint, parsed: object, receive: Receive, send: Send
    ) -> None:
        try:
            body = request.json_object(parsed)
            behaviour = request.with_overrides(self.defaults, body)
        except Invalid as exc:
            await _send_json(send, 400, exc.body)
            return
        streams = body.get("stream") is True
        stalls_mid_stream = streams and behaviour.stall_after_chunks is not None
        if behaviour.stall_s and not stalls_mid_stream and await _pause(receive, behaviour.stall_s):
            return  # the client gave up while we stalled
        self.counted += 1
        name = body.get("model")
        name = name if isinstance(name, str) else ""
        if behaviour.fail_status is not None:
            await _send_json(
                send, behaviour.fail_status, shapes.failure(behaviour.fail_status, name)
            )
            return
        if behaviour.fails(self.counted):
            await _send_json(send, 500, shapes.failure(500, name))
            return
        try:
            answer = endpoint(body, behaviour, request.model(body))
        except Invalid as exc:
            await _send_json(send, 400, exc.body)
            return
        if isinstance(answer, media.Audio):
            await _send_audio(send, answer, behaviour, receive)
        elif isinstance(answer, bytes):
            await _send_json(send, 200, answer)
        else:
            await _stream(answer, behaviour, receive, send)


def build_app(defaults: Behaviour) -> DevProvider:
    """The ASGI app; loads the tokenizers first so that no request pays for it."""
    tokenizer.warm()
    return DevProvider(defaults)


def server_config(host: str, port: int, defaults: Behaviour) -> uvicorn.Config:
    """uvicorn's settings for the dev provider: the fastest stack, no access log."""
    return uvicorn.Config(
        build_app(defaults),
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        ws="none",
        lifespan="off",
        access_log=False,
        log_level="warning",
    )


def run(host: str, port: int, defaults: Behaviour) -> None:
    server = uvicorn.Server(server_config(host, port, defaults))
    server.run()
    if not server.started:
        raise SystemExit(STARTUP_FAILURE)  # as uvicorn.run does, e.g. when the port is taken


def _chat(body: Json, behaviour: Behaviour, model: str) -> Answer:
    request.check_messages(request.required(body, "messages"))
    include_usage, obfuscate = request.stream_options(body)
    prompt_tokens = estimate.chat_prompt_tokens(body)
    reply = _reply("chatcmpl-", body, behaviour, model, prompt_tokens, behaviour.reply_tokens)
    if body.get("stream") is True:
        return shapes.chat_events(reply, include_usage, obfuscate, behaviour.usage_style)
    return shapes.chat_completion(reply)


def _completion(body: Json, behaviour: Behaviour, model: str) -> Answer:
    prompt = request.required(body, "prompt")
    include_usage, _ = request.stream_options(body)
    prompt_tokens = estimate.completions_prompt_tokens(body)
    # A batch of prompts gets n choices each, numbered prompt by prompt.
    prompts = len(prompt) if request.is_batch(prompt) else 1
    reply = _reply("cmpl-", body, behaviour, model, prompt_tokens, _LEGACY_MAX_TOKENS, prompts)
    if body.get("stream") is True:
        return shapes.text_completion_events(reply, include_usage, behaviour.usage_style)
    return shapes.text_completion(reply)


def _embeddings(body: Json, behaviour: Behaviour, model: str) -> Answer:
    inputs = request.embedding_inputs(request.required(body, "input"))
    dimensions = body.get("dimensions", _EMBEDDING_DIMENSIONS)
    if not request.is_int(dimensions) or not 1 <= dimensions <= 3072:
        raise Invalid(request.error("Invalid 'dimensions': expected 1..3072.", "dimensions"))
    encoding_format = body.get("encoding_format") or "float"
    if encoding_format not in ("float", "base64"):
        raise Invalid(
            request.error(
                f"Invalid value: '{encoding_format}'. Supported values are: 'float' and 'base64'.",
                "encoding_format",
                "invalid_value",
            )
        )
    usage = None if behaviour.omit_usage else estimate.embeddings_input_tokens(body)
    return shapes.embeddings(inputs, model, dimensions, encoding_format == "base64", usage)


def _reply(
    prefix: str,
    body: Json,
    behaviour: Behaviour,
    model: str,
    prompt_tokens: int,
    default_cap: int,
    prompts: int = 1,
) -> Reply:
    n = request.choices(body)
    # completion_cap is the allowance of all n choices together; each gets an equal share.
    cap = estimate.completion_cap(body, default_cap) // n
    wanted = behaviour.reply_tokens
    pieces = shapes.reply_pieces(tokenizer.encoding_for_model(model), min(wanted, cap))
    return Reply(
        id=shapes.new_id(prefix),
        model=model,
        pieces=pieces,
        choices=n * prompts,
        finish_reason="length" if cap < wanted else "stop",
        prompt_tokens=prompt_tokens + behaviour.prompt_extra_tokens,
        with_usage=not behaviour.omit_usage,
        without_completion_tokens=behaviour.omit_completion_tokens,
        cached_tokens=behaviour.cache_read_tokens,
        cache_write_tokens=behaviour.cache_write_tokens,
        reasoning_tokens=behaviour.reasoning_tokens,
    )


def _record(scope: Scope, body: object) -> Json:
    headers: dict[str, str] = {}
    for name, value in scope["headers"]:
        key, text = name.decode("latin-1"), value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return {
        "method": scope["method"],
        "path": scope["path"],
        "query": scope["query_string"].decode("latin-1"),
        "headers": headers,
        "body": body,
    }


def _invalid_url(method: str, path: str) -> bytes:
    return request.error(f"Invalid URL ({method} {path})")


async def _read_body(receive: Receive) -> bytes:
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    return body


def _request_id() -> tuple[bytes, bytes]:
    return b"x-request-id", b"req_" + secrets.token_hex(16).encode()


async def _send_json(send: Send, status: int, body: bytes) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(body)),
        _request_id(),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_audio(
    send: Send, audio: media.Audio, behaviour: Behaviour, receive: Receive
) -> None:
    """The audio in a few body chunks, `chunk_delay_s` apart (as a streamed TTS answer)."""
    headers = [(b"content-type", audio.content_type.encode()), _request_id()]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    chunks = audio.chunks()
    for index, chunk in enumerate(chunks):
        if index and behaviour.chunk_delay_s and await _pause(receive, behaviour.chunk_delay_s):
            return
        await send(
            {"type": "http.response.body", "body": chunk, "more_body": index < len(chunks) - 1}
        )


async def _stream(events: list[bytes], behaviour: Behaviour, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [*_SSE, _request_id()]})
    last = len(events) - 1
    # Both count data events already sent; set past the end, they act before `data: [DONE]`.
    cut = behaviour.cut_after_chunks
    cut = None if cut is None else min(cut, last)
    stall = behaviour.stall_after_chunks
    stall = None if stall is None or not behaviour.stall_s else min(stall, last)
    for sent, event in enumerate(events):
        if sent == cut:
            # Returning mid-response makes uvicorn close the connection: a broken stream.
            return
        if sent == stall and await _pause(receive, behaviour.stall_s):
            return
        if sent and behaviour.chunk_delay_s and await _pause(receive, behaviour.chunk_delay_s):
            return
        await send({"type": "http.response.body", "body": event, "more_body": sent < last})


async def _pause(receive: Receive, seconds: float) -> bool:
    """Sleep `seconds`; True as soon as the client disconnects instead."""
    try:
        message = await asyncio.wait_for(receive(), seconds)
    except TimeoutError:
        return False
    return bool(message["type"] == "http.disconnect")
