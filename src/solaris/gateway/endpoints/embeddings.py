"""POST /v1/embeddings: input tokens only, no completion and no stream.

`input` takes the four shapes of OpenAI's reference: a string, a list of strings, a list of
token ids, or a list of lists of token ids (what LibreChat's RAG API sends, with
`encoding_format: "base64"`, when RAG_CHECK_EMBEDDING_CTX_LENGTH is on). Token ids count as
their number, no tokenizer needed. Anything else is refused here, before the caller is
identified: nothing is held, charged or stored for a request the upstream could not serve.
The answer (float vectors or base64 of little-endian float32) passes through untouched.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from solaris.errors import BadRequest
from solaris.gateway.endpoints.base import Endpoint
from solaris.metering import estimate

__all__ = ["EMBEDDINGS", "INPUTS_MAX", "TOKEN_IDS_MAX"]

# OpenAI's bounds for every embedding model: at most 2048 inputs in one request, and at most
# 300,000 tokens summed across them (what token ids are is known here without a tokenizer;
# text is counted by the estimate and left to the provider's own per-input limit).
INPUTS_MAX = 2048
TOKEN_IDS_MAX = 300_000
TOKEN_ID_BOUND = 2**32  # token ids are unsigned 32-bit integers in every tokenizer's vocabulary
ENCODING_FORMATS = ("float", "base64")
SHAPES = (
    "a non-empty string, an array of non-empty strings, an array of token ids, "
    "or an array of arrays of token ids"
)


@dataclass(frozen=True, slots=True)
class Embeddings(Endpoint):
    def check(self, body: Mapping[str, Any]) -> None:
        super(Embeddings, self).check(body)
        _check_input(body["input"])
        encoding_format = body.get("encoding_format")
        if encoding_format is not None and encoding_format not in ENCODING_FORMATS:
            raise BadRequest(
                "'encoding_format' must be 'float' or 'base64'.", param="encoding_format"
            )
        dimensions = body.get("dimensions")
        if dimensions is not None and not (_is_int(dimensions) and dimensions > 0):
            raise BadRequest("'dimensions' must be a positive integer.", param="dimensions")

    def prompt_tokens(self, body: Mapping[str, Any]) -> int:
        return estimate.embeddings_input_tokens(body)


def _check_input(value: object) -> None:
    if isinstance(value, str):
        if not value:
            raise _invalid("it is an empty string")
        return
    if not isinstance(value, list) or not value:
        raise _invalid("expected " + SHAPES)
    first = value[0]
    if _is_int(first):  # one input, as token ids
        _check_token_ids(value, "input")
        return
    if len(value) > INPUTS_MAX:
        raise _invalid(f"{len(value)} inputs, at most {INPUTS_MAX} are allowed in one request")
    if isinstance(first, str):
        if not all(isinstance(item, str) and item for item in value):
            raise _invalid("an array of strings must hold only non-empty strings")
        return
    if not isinstance(first, list):
        raise _invalid("expected " + SHAPES)
    total = 0
    for index, item in enumerate(value):
        if not isinstance(item, list) or not item:
            raise _invalid(f"input[{index}] must be a non-empty array of token ids")
        _check_token_ids(item, f"input[{index}]")
        total += len(item)
        if total > TOKEN_IDS_MAX:
            raise _too_many_tokens()


def _check_token_ids(ids: list[Any], where: str) -> None:
    if len(ids) > TOKEN_IDS_MAX:
        raise _too_many_tokens()
    # `type(...) is int` refuses JSON true/false (bool is an int subclass) and floats alike.
    if not all(type(token) is int for token in ids):
        raise _invalid(f"{where} must hold only integer token ids (no nested arrays)")
    if min(ids) < 0 or max(ids) >= TOKEN_ID_BOUND:
        raise _invalid(f"{where} holds a token id outside 0..{TOKEN_ID_BOUND - 1}")


def _is_int(value: object) -> bool:
    return type(value) is int


def _invalid(reason: str) -> BadRequest:
    return BadRequest(f"Invalid 'input': {reason}.", param="input")


def _too_many_tokens() -> BadRequest:
    return _invalid(f"more than {TOKEN_IDS_MAX} token ids in one request")


EMBEDDINGS = Embeddings(
    name="embeddings",
    path="/v1/embeddings",
    upstream_path="/embeddings",
    input_field="input",
    generates=False,
)
