"""POST /v1/completions: the legacy text completions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from solaris.gateway.endpoints.base import Endpoint
from solaris.metering import estimate

__all__ = ["COMPLETIONS"]


@dataclass(frozen=True, slots=True)
class Completions(Endpoint):
    def prompt_tokens(self, body: Mapping[str, Any]) -> int:
        return estimate.completions_prompt_tokens(body)


COMPLETIONS = Completions(
    name="completions",
    path="/v1/completions",
    upstream_path="/completions",
    input_field="prompt",
    generates=True,
)
