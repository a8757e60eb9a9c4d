"""The dev provider's image, speech and moderation routes, answered as OpenAI answers them.

/v1/images/generations  `n` copies of a 1x1 PNG (`b64_json`, or a data URL as `url`);
                        gpt-image-* models report `usage` (input: the prompt's tokens,
                        output: IMAGE_OUTPUT_TOKENS per image), as gpt-image-1 does, unless
                        `omit_usage`; dall-e-* report none
/v1/audio/speech        SPEECH_BYTES_PER_CHARACTER bytes of silence-like audio per input
                        character, in a few chunks (`Audio`) `chunk_delay_s` apart,
                        content type by format
/v1/moderations         one unflagged result per input, no usage (as OpenAI's)
"""

from __future__ import annotations

import time

import orjson

from solaris.devprovider import request, shapes
from solaris.devprovider.request import Behaviour, Invalid, Json
from solaris.metering import tokenizer

__all__ = ["PNG", "Audio", "images", "moderations", "speech"]

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
IMAGE_OUTPUT_TOKENS = 272  # gpt-image-1's output tokens for a low-quality square image
SPEECH_BYTES_PER_CHARACTER = 64
SPEECH_CHUNKS = 4
SPEECH_TYPES = {
    "mp3": "audio/mpeg", "opus": "audio/ogg", "aac": "audio/aac", "flac": "audio/flac",
    "wav": "audio/wav", "pcm": "audio/pcm",
}  # fmt: skip
CATEGORIES = (
    "harassment", "harassment/threatening", "hate", "hate/threatening", "illicit",
    "illicit/violent", "self-harm", "self-harm/instructions", "self-harm/intent", "sexual",
    "sexual/minors", "violence", "violence/graphic",
)  # fmt: skip


class Audio(bytes):
    """An answer that is audio, not JSON: sent in `chunks` with its `content_type`."""

    content_type: str = "audio/mpeg"

    def chunks(self) -> list[bytes]:
        size = max(1, -(-len(self) // SPEECH_CHUNKS))
        return [bytes(self[i : i + size]) for i in range(0, len(self), size)] or [b""]


def images(body: Json, behaviour: Behaviour, model: str) -> bytes:
    prompt = request.required(body, "prompt")
    if not isinstance(prompt, str) or not prompt:
        raise Invalid(request.error("'prompt' must be a non-empty string.", "prompt"))
    n = body.get("n", 1)
    if not request.is_int(n) or not 1 <= n <= 10:
        raise Invalid(request.error("Invalid 'n': expected 1..10.", "n"))
    as_url = body.get("response_format") == "url"
    image = {"url": "data:image/png;base64," + PNG} if as_url else {"b64_json": PNG}
    answer: Json = {"created": int(time.time()), "data": [image] * n}
    if model.startswith("gpt-image") and not behaviour.omit_usage:
        prompt_tokens = tokenizer.count_tokens(model, prompt)
        output = IMAGE_OUTPUT_TOKENS * n
        answer["usage"] = {
            "input_tokens": prompt_tokens,
            "output_tokens": output,
            "total_tokens": prompt_tokens + output,
            "input_tokens_details": {"text_tokens": prompt_tokens, "image_tokens": 0},
        }
    return orjson.dumps(answer)


def speech(body: Json, behaviour: Behaviour, model: str) -> Audio:
    text = request.required(body, "input")
    if not isinstance(text, str) or not text:
        raise Invalid(request.error("'input' must be a non-empty string.", "input"))
    request.required(body, "voice")
    fmt = body.get("response_format", "mp3")
    if fmt not in SPEECH_TYPES:
        raise Invalid(request.error(f"Invalid 'response_format': {fmt!r}.", "response_format"))
    audio = Audio(bytes(range(256)) * (len(text) * SPEECH_BYTES_PER_CHARACTER // 256 + 1))
    audio = Audio(audio[: len(text) * SPEECH_BYTES_PER_CHARACTER])
    audio.content_type = SPEECH_TYPES[fmt]
    return audio


def moderations(body: Json, behaviour: Behaviour, model: str) -> bytes:
    value = request.required(body, "input")
    inputs = value if isinstance(value, list) else [value]
    result = {
        "flagged": False,
        "categories": dict.fromkeys(CATEGORIES, False),
        "category_scores": dict.fromkeys(CATEGORIES, 0.0001),
        "category_applied_input_types": {name: ["text"] for name in CATEGORIES},
    }
    answer = {"id": shapes.new_id("modr-"), "model": model, "results": [result] * len(inputs)}
    return orjson.dumps(answer)
