"""Offline token counting: tiktoken encodings from shipped files and request estimates."""

from solaris.metering.estimate import (
    chat_prompt_tokens,
    completion_cap,
    completions_prompt_tokens,
    embeddings_input_tokens,
    text_tokens,
)
from solaris.metering.tokenizer import count_tokens, encoding_for_model, warm

__all__ = [
    "chat_prompt_tokens",
    "completion_cap",
    "completions_prompt_tokens",
    "count_tokens",
    "embeddings_input_tokens",
    "encoding_for_model",
    "text_tokens",
    "warm",
]
