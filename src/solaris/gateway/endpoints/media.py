"""The priced routes LibreChat calls without a user (image tools, text to speech, moderation):
each costs a configured price per model (`image_price`, `speech_price`, `moderation_price`)
that is known before the request is forwarded, so the hold is that price, whole, never lowered
(a balance that cannot cover it is refused with the 402).

    POST /v1/images/generations  n * image_price; an answer reporting token usage
                                 (gpt-image-1's `usage.input_tokens`/`output_tokens`) is
                                 billed at the model's weights instead
    POST /v1/audio/speech        ceil(characters * speech_price / 1000); the audio passes
                                 through as it comes, never buffered
    POST /v1/moderations         moderation_price (0 unless configured); a usage the provider
                                 reports is billed at the weights instead

Malformed bodies are refused here, in OpenAI's shape, before anyone is identified: nothing is
held, charged or stored. A body without `model` gets OpenAI's default model for the route (and
the upstream is sent it, so a LiteLLM proxy can route it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from solaris.config import ModelPolicy
from solaris.errors import BadRequest
from solaris.gateway.endpoints.base import Endpoint, Usage, count, model_and_cap
from solaris.metering import tokenizer
from solaris.metering.billing import ToolCharge

__all__ = ["IMAGES", "MODERATIONS", "SPEECH", "SPEECH_INPUT_MAX"]

IMAGES_MAX = 10  # OpenAI's bound on `n`
SPEECH_INPUT_MAX = 4096  # OpenAI's bound on the characters of one speech request
SPEECH_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
STRING_OPTIONS = ("size", "quality", "response_format", "style", "background", "output_format")


@dataclass(frozen=True, slots=True)
class Priced(Endpoint):
    """What the three share: no completion, the model always named upstream."""

    def check(self, body: Mapping[str, Any]) -> None:
        if self.input_field not in body:
            field = self.input_field
            raise BadRequest(f"Missing required parameter: '{field}'.", param=field)

    def upstream_changes(
        self, body: Mapping[str, Any], upstream_model: str | None, completion_cap: int | None
    ) -> dict[str, Any]:
        return model_and_cap(upstream_model or body["model"], "", None)

    def prompt_tokens(self, body: Mapping[str, Any]) -> int:
        return sum(tokenizer.count_tokens(body["model"], text) for text in _texts(body))


@dataclass(frozen=True, slots=True)
class Images(Priced):
    def check(self, body: Mapping[str, Any]) -> None:
        super(Images, self).check(body)
        _non_empty_string(body, "prompt")
        n = body.get("n", 1)
        if not (type(n) is int and 1 <= n <= IMAGES_MAX):
            raise BadRequest(f"'n' must be an integer from 1 to {IMAGES_MAX}.", param="n")
        for name in STRING_OPTIONS:
            if name in body and not isinstance(body[name], str):
                raise BadRequest(f"'{name}' must be a string.", param=name)
        if body.get("stream") is True:
            raise BadRequest(
                "Streamed image generation is not metered by this gateway; send it without "
                "'stream'.",
                param="stream",
            )

    def priced(self, body: Mapping[str, Any], policy: ModelPolicy) -> ToolCharge:
        if policy.image_price is None:
            raise _unpriced(body["model"], "image_price", "images")
        return ToolCharge("image", body.get("n", 1), policy.image_price)

    def usage(self, payload: Mapping[str, Any]) -> Usage | None:
        usage = payload.get("usage")
        if not isinstance(usage, dict):
            return None
        prompt, completion = count(usage.get("input_tokens")), count(usage.get("output_tokens"))
        if prompt is None and completion is None:
            return None
        return Usage(prompt_tokens=prompt, completion_tokens=completion)


@dataclass(frozen=True, slots=True)
class Speech(Priced):
    def check(self, body: Mapping[str, Any]) -> None:
        super(Speech, self).check(body)
        text = _non_empty_string(body, "input")
        if len(text) > SPEECH_INPUT_MAX:
            raise BadRequest(
                f"'input' is {len(text)} characters, at most {SPEECH_INPUT_MAX} are allowed.",
                param="input",
            )
        voice = body.get("voice")
        if not (isinstance(voice, str) and voice) and not isinstance(voice, dict):
            raise BadRequest("Missing required parameter: 'voice'.", param="voice")
        fmt = body.get("response_format", "mp3")
        if fmt not in SPEECH_FORMATS:
            raise BadRequest(
                f"'response_format' must be one of {', '.join(SPEECH_FORMATS)}.",
                param="response_format",
            )
        speed = body.get("speed", 1)
        if not (type(speed) in (int, float) and 0.25 <= speed <= 4):
            raise BadRequest("'speed' must be a number from 0.25 to 4.", param="speed")
        if body.get("stream_format", "audio") not in ("audio", "sse"):
            raise BadRequest("'stream_format' must be 'audio' or 'sse'.", param="stream_format")
        if "instructions" in body and not isinstance(body["instructions"], str):
            raise BadRequest("'instructions' must be a string.", param="instructions")

    def priced(self, body: Mapping[str, Any], policy: ModelPolicy) -> ToolCharge:
        if policy.speech_price is None:
            raise _unpriced(body["model"], "speech_price", "speech")
        characters = len(body["input"])
        return ToolCharge("speech", 1, math.ceil(characters * policy.speech_price / 1000))


@dataclass(frozen=True, slots=True)
class Moderations(Priced):
    def check(self, body: Mapping[str, Any]) -> None:
        super(Moderations, self).check(body)
        if not _moderation_input(body["input"]):
            raise BadRequest(
                "Invalid 'input': expected a non-empty string, an array of strings, or an "
                "array of text and image_url objects.",
                param="input",
            )

    def priced(self, body: Mapping[str, Any], policy: ModelPolicy) -> ToolCharge:
        return ToolCharge("moderation", 1, policy.moderation_price)


def _moderation_input(value: object) -> bool:
    if isinstance(value, str):
        return bool(value)
    if not isinstance(value, list) or not value:
        return False
    return all(isinstance(item, str) for item in value) or all(
        isinstance(item, dict) and item.get("type") in ("text", "image_url") for item in value
    )


def _texts(body: Mapping[str, Any]) -> list[str]:
    """The text a request sends the model: a prompt, a speech input, moderation inputs."""
    value = body.get("prompt", body.get("input"))
    items = value if isinstance(value, list) else [value]
    texts = []
    for item in items:
        if isinstance(item, dict):
            item = item.get("text")
        if isinstance(item, str):
            texts.append(item)
    return texts


def _non_empty_string(body: Mapping[str, Any], field: str) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not value:
        raise BadRequest(f"'{field}' must be a non-empty string.", param=field)
    return value


def _unpriced(model: str, setting: str, what: str) -> BadRequest:
    return BadRequest(
        f"The gateway has no price for {what} of '{model}': the operator sets `{setting}` "
        "for the model (SOLARIS_MODELS).",
        param="model",
    )


IMAGES = Images(
    name="images",
    path="/v1/images/generations",
    upstream_path="/images/generations",
    input_field="prompt",
    generates=False,
    default_model="dall-e-2",
)
SPEECH = Speech(
    name="speech",
    path="/v1/audio/speech",
    upstream_path="/audio/speech",
    input_field="input",
    generates=False,
    binary_answer=True,
)
MODERATIONS = Moderations(
    name="moderations",
    path="/v1/moderations",
    upstream_path="/moderations",
    input_field="input",
    generates=False,
    default_model="omni-moderation-latest",
)
