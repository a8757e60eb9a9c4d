"""POST /v1/embeddings: input tokens only, no completion and no stream."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from solaris.gateway.endpoints.base import Endpoint
from solaris.metering import estimate

__all__ = ["EMBEDDINGS"]


@dataclass(frozen=True, slots=True)
class Embeddings(Endpoint):
    def prompt_tokens(self, body: Mapping[str, Any]) -> int:
        return estimate.embeddings_input_tokens(body)


EMBEDDINGS = Embeddings(
    name="embeddings",
    path="/v1/embeddings",
    upstream_path="/embeddings",
    input_field="input",
    generates=False,
)
