"""Offline tokenizer and request estimates, checked against the OpenAI cookbook's API counts."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path
from typing import Any

import pytest
from tiktoken_ext import openai_public  # type: ignore[import-untyped]

from solaris.metering import (
    chat_prompt_tokens,
    completion_cap,
    completions_prompt_tokens,
    count_tokens,
    embeddings_input_tokens,
    encoding_for_model,
    text_tokens,
)
from solaris.metering.estimate import (
    AUDIO_PART_TOKENS,
    FILE_PART_TOKENS,
    IMAGE_HIGH_DETAIL_TOKENS,
    IMAGE_LOW_DETAIL_TOKENS,
)
from solaris.metering.tokenizer import ENCODINGS_DIR, build_encoding, encoding_name

# From "How to count tokens with tiktoken" (openai-cookbook), with the prompt_tokens the API
# reported for them.
JARGON_MESSAGES: list[dict[str, Any]] = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates corporate "
        "jargon into plain English.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "New synergies will help drive top-line growth.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Things working well together will increase revenue.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more bandwidth to touch base on opportunities "
        "for increased leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the client "
        "deliverable.",
    },
]

WEATHER_TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_current_weather",
            "description": "Get the current weather in a given location",
            "parameters": {
                "type": "object",
                "properties": {
                    "location": {
                        "type": "string",
                        "description": "The city and state, e.g. San Francisco, CA",
                    },
                    "unit": {
                        "type": "string",
                        "description": "The unit of temperature to return",
                        "enum": ["celsius", "fahrenheit"],
                    },
                },
                "required": ["location"],
            },
        },
    }
]

WEATHER_MESSAGES: list[dict[str, Any]] = [
    {
        "role": "system",
        "content": "You are a helpful assistant that can answer to questions about the weather.",
    },
    {"role": "user", "content": "What's the weather like in San Francisco?"},
]


@pytest.mark.parametrize(
    ("model", "expected"),
    [("gpt-4o", 124), ("gpt-4o-mini", 124), ("gpt-4", 129), ("gpt-3.5-turbo-0125", 129)],
)
def test_cookbook_messages(model: str, expected: int) -> None:
    assert chat_prompt_tokens({"model": model, "messages": JARGON_MESSAGES}) == expected


@pytest.mark.parametrize(("model", "expected"), [("gpt-4o", 101), ("gpt-4", 105)])
def test_cookbook_tools(model: str, expected: int) -> None:
    body = {"model": model, "messages": WEATHER_MESSAGES, "tools": WEATHER_TOOLS}
    assert chat_prompt_tokens(body) == expected


def test_legacy_functions_count_like_tools() -> None:
    tools = {"model": "gpt-4o", "messages": WEATHER_MESSAGES, "tools": WEATHER_TOOLS}
    functions = {
        "model": "gpt-4o",
        "messages": WEATHER_MESSAGES,
        "functions": [WEATHER_TOOLS[0]["function"]],
    }
    assert chat_prompt_tokens(functions) == chat_prompt_tokens(tools)


@pytest.mark.parametrize(
    ("model", "ids"),
    [("gpt-4o-mini", [83, 8251, 2488, 382, 2212, 0]), ("gpt-4", [83, 1609, 5963, 374, 2294, 0])],
)
def test_cookbook_token_ids(model: str, ids: list[int]) -> None:
    # The cookbook's encodings of "tiktoken is great!" in both shipped vocabularies.
    assert encoding_for_model(model).encode("tiktoken is great!") == ids


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gpt-4o", "o200k_base"),
        ("openai/gpt-4o", "o200k_base"),
        ("gpt-4-0613", "cl100k_base"),
        ("text-embedding-3-small", "cl100k_base"),
        ("text-davinci-003", "cl100k_base"),  # p50k is not shipped
        ("gpt-oss-120b", "o200k_base"),  # o200k_harmony shares o200k_base's ranks
        ("claude-3-5-sonnet", "o200k_base"),
        ("", "o200k_base"),
    ],
)
def test_encoding_choice(model: str, expected: str) -> None:
    assert encoding_name(model) == expected
    assert encoding_for_model(model).name == expected


def test_encodings_are_shared() -> None:
    assert encoding_for_model("gpt-4o") is encoding_for_model("openai/gpt-4o-mini")


def test_special_token_text_is_plain_text() -> None:
    assert count_tokens("gpt-4o", "a <|endoftext|> b <|endofprompt|>") > 4
    assert text_tokens("gpt-4", "<|fim_prefix|>") == count_tokens("gpt-4", "<|fim_prefix|>") > 1


def test_corrupted_file_is_rejected(tmp_path: Path) -> None:
    shutil.copy(ENCODINGS_DIR / "cl100k_base.tiktoken", tmp_path)
    assert build_encoding("cl100k_base", tmp_path).encode("hello") == [15339]
    corrupted = tmp_path / "cl100k_base.tiktoken"
    data = bytearray(corrupted.read_bytes())
    data[-3] ^= 1  # change one digit of the last rank
    corrupted.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256 mismatch"):
        build_encoding("cl100k_base", tmp_path)


def test_unshipped_encoding_is_refused() -> None:
    with pytest.raises(ValueError, match="not shipped"):
        build_encoding("p50k_base")


def test_builds_without_network_or_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    # An empty cache: a download-backed loader could neither find a copy nor fetch one.
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
    loader = openai_public.load_tiktoken_bpe
    for name in ("o200k_base", "cl100k_base"):
        assert build_encoding(name).name == name
    assert openai_public.load_tiktoken_bpe is loader
    assert not any(cache.iterdir())


def test_content_parts() -> None:
    def prompt(content: Any) -> int:
        return chat_prompt_tokens(
            {"model": "gpt-4o", "messages": [{"role": "user", "content": content}]}
        )

    base = prompt("")
    text = "Describe these."
    assert prompt([{"type": "text", "text": text}]) == prompt(text)
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    low = {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}}
    audio = {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
    file = {"type": "file", "file": {"file_id": "file-abc"}}
    assert prompt([image]) == base + IMAGE_HIGH_DETAIL_TOKENS
    assert prompt([low]) == base + IMAGE_LOW_DETAIL_TOKENS
    assert prompt([audio, file]) == base + AUDIO_PART_TOKENS + FILE_PART_TOKENS
    assert prompt([{"type": "mystery"}, "not a part", 3]) == base
    assert prompt(None) == prompt([]) == base


def test_tool_calls_and_tool_results() -> None:
    arguments = '{"location": "San Francisco, CA", "unit": "celsius"}'
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_current_weather", "arguments": arguments},
    }
    bare = [*WEATHER_MESSAGES, {"role": "assistant", "content": None}]
    called = [*WEATHER_MESSAGES, {"role": "assistant", "content": None, "tool_calls": [call]}]
    answered = [*called, {"role": "tool", "tool_call_id": "call_1", "content": "18 degrees"}]
    legacy = [
        *WEATHER_MESSAGES,
        {"role": "assistant", "content": None, "function_call": call["function"]},
    ]

    def prompt(messages: list[dict[str, Any]]) -> int:
        return chat_prompt_tokens({"model": "gpt-4o", "messages": messages})

    call_text = count_tokens("gpt-4o", "get_current_weather") + count_tokens("gpt-4o", arguments)
    assert prompt(legacy) == prompt(bare) + call_text
    assert prompt(called) == prompt(bare) + 3 + call_text
    assert prompt(answered) > prompt(called) + count_tokens("gpt-4o", "18 degrees")


def test_odd_chat_shapes_do_not_raise() -> None:
    odd: dict[str, Any] = {
        "model": "claude-sonnet-4",
        "messages": [
            "not a message",
            {"role": "user", "content": [{"type": "text", "text": 7}]},
            {"role": "assistant", "tool_calls": [None, {"function": "x"}], "function_call": 3},
        ],
        "tools": [
            None,
            {"type": "function"},
            {"type": "function", "function": {"name": "f", "parameters": None}},
            {
                "type": "function",
                "function": {
                    "name": "g",
                    "description": 5,
                    "parameters": {
                        "properties": {
                            "a": None,
                            "b": {"type": ["string", "null"], "enum": [1, None, "x"]},
                            "c": {"type": "array", "items": {"type": "integer"}, "default": 2**70},
                        }
                    },
                },
            },
        ],
        "functions": "nope",
    }
    assert chat_prompt_tokens(odd) > chat_prompt_tokens({**odd, "tools": None}) > 0


def test_nested_schemas_are_counted() -> None:
    flat = {"type": "array"}
    nested = {"type": "array", "items": {"type": "string", "description": "A city name."}}

    def tools_with(schema: dict[str, Any]) -> int:
        function = {"name": "f", "parameters": {"properties": {"cities": schema}}}
        return chat_prompt_tokens(
            {
                "model": "gpt-4o",
                "messages": [],
                "tools": [{"type": "function", "function": function}],
            }
        )

    assert tools_with(nested) > tools_with(flat)


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("tiktoken is great!", 6),
        (["tiktoken is great!", "tiktoken is great!"], 12),
        ([1, 2, 3], 3),
        ([[1, 2, 3], [4, 5]], 5),
        ([], 0),
        (None, 0),
    ],
)
def test_completions_prompt(prompt: Any, expected: int) -> None:
    assert completions_prompt_tokens({"model": "gpt-3.5-turbo-instruct", "prompt": prompt}) == (
        expected
    )


def test_completions_suffix() -> None:
    body = {"model": "gpt-3.5-turbo-instruct", "prompt": [1, 2], "suffix": "tiktoken is great!"}
    assert completions_prompt_tokens(body) == 2 + 6


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("tiktoken is great!", 6),
        (["tiktoken is great!", "a"], 7),
        ([11, 22], 2),
        ([[11, 22], [33]], 3),
        ({"not": "valid"}, 0),
    ],
)
def test_embeddings_input(value: Any, expected: int) -> None:
    assert embeddings_input_tokens({"model": "text-embedding-3-small", "input": value}) == expected


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, 4096),
        ({"max_tokens": 100}, 100),
        ({"max_completion_tokens": 50, "max_tokens": 100}, 50),
        ({"max_completion_tokens": None, "max_tokens": 100}, 100),
        ({"max_completion_tokens": -1, "max_tokens": 100}, 100),
        ({"max_tokens": "100"}, 4096),
        ({"max_tokens": 1.5}, 4096),
        ({"max_tokens": True}, 4096),
        ({"max_tokens": 0}, 0),
        ({"max_tokens": 100, "n": 3}, 300),
        ({"n": 2}, 8192),
        ({"max_tokens": 100, "n": 1}, 100),
        ({"max_tokens": 100, "n": "3"}, 100),
        ({"max_tokens": 100, "n": True}, 100),
    ],
)
def test_completion_cap(fields: dict[str, Any], expected: int) -> None:
    assert completion_cap({"model": "gpt-4o", "messages": [], **fields}, 4096) == expected
