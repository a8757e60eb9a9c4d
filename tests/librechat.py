"""LibreChat's own client stack for end-to-end tests.

LibreChat cannot run here (it needs MongoDB), so `tests/e2e/librechat/client.mjs` builds
the chat model the way LibreChat v0.8.x does for a `librechat.yaml` custom endpoint
(LangChain `ChatOpenAI` over the `openai` SDK, with LibreChat's options and resolved
`X-LibreChat-*` headers) or, with `"provider": "anthropic"`, for its native Anthropic endpoint
behind `ANTHROPIC_REVERSE_PROXY` (LangChain `ChatAnthropic` over `@anthropic-ai/sdk`, the user
in `metadata.user_id`; baseURL is then the gateway's root, without /v1) and sends one request
through it. This module installs that
npm project when needed and runs one job per call.

Job keys: baseURL, apiKey, model, userId, userEmail, conversationId,
messages [{role, content}], mode ("chat": streamed, "title": non-streamed), timeoutMs,
optional maxRetries (LibreChat leaves it unset: LangChain then retries 5xx, connection
errors and 429s with a short Retry-After up to 6 times with backoff), titleFallback
(false: skip the second title call LibreChat makes after a failed one), headers
(templates replacing the endpoint's X-LibreChat-* header block; for anthropic, the
`endpoints.anthropic.headers` block, none by default), useResponsesApi (true: the chat's
"Use Responses API" switch, so POST {baseURL}/responses), provider ("openai" or "anthropic")
maxTokens (anthropic: the endpoint's "Max Output Tokens", default 8192), and thinking /
thinkingBudget (anthropic: LibreChat's "Thinking" switch, default on, and its budget, default
2000).

Result: {"ok": true, "content", "chunks", "textChunks", "usage", "responseHeaders",
"requests", "statuses"} or {"ok": false, "status", "message", "name", "className",
"responseHeaders", "requests", "statuses", ...}; see client.mjs for the details.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "NODE_DIR",
    "LibreChatClientError",
    "LibreChatClientUnavailable",
    "ensure_installed",
    "run_librechat",
]

NODE_DIR = Path(__file__).resolve().parent / "e2e" / "librechat"
CLIENT = NODE_DIR / "client.mjs"
MIN_NODE_MAJOR = 20
INSTALL_TIMEOUT_S = 600.0

_LOCK_FILES = ("package.json", "package-lock.json")
_STAMP = NODE_DIR / "node_modules" / ".solaris-install-stamp"
# Settings LangChain or the provider SDKs would pick up from the environment.
_AMBIENT_ENV = re.compile(r"^(LANGCHAIN_|LANGSMITH_|OPENAI_|ANTHROPIC_)")


class LibreChatClientUnavailable(RuntimeError):
    """node/npm are missing or too old, or `npm ci` failed."""


class LibreChatClientError(RuntimeError):
    """client.mjs ran but did not answer with a JSON result line."""


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise LibreChatClientUnavailable(
            f"`{name}` not found on PATH: the LibreChat client tests need Node.js "
            f">= {MIN_NODE_MAJOR} with npm (e.g. `apt-get install nodejs npm`)"
        )
    return path


def _check_node(node: str) -> None:
    version = subprocess.run(
        [node, "--version"], capture_output=True, text=True, check=False, timeout=30
    ).stdout.strip()
    match = re.match(r"v(\d+)\.", version)
    if match is None or int(match.group(1)) < MIN_NODE_MAJOR:
        raise LibreChatClientUnavailable(
            f"Node.js >= {MIN_NODE_MAJOR} is needed for {NODE_DIR}, found {version or 'none'}"
        )


def _lock_digest() -> str:
    digest = hashlib.sha256()
    for name in _LOCK_FILES:
        digest.update(name.encode())
        digest.update((NODE_DIR / name).read_bytes())
    return digest.hexdigest()


def _is_current(digest: str) -> bool:
    try:
        return _STAMP.read_text().strip() == digest
    except OSError:
        return False


@contextlib.contextmanager
def _install_lock() -> Iterator[None]:
    """Serialise installs across processes (e.g. parallel pytest workers)."""
    key = hashlib.sha256(str(NODE_DIR).encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"solaris-librechat-npm-{key}.lock"
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_installed() -> None:
    """Run `npm ci` in NODE_DIR unless node_modules matches package-lock.json already."""
    node = _tool("node")
    npm = _tool("npm")
    _check_node(node)
    digest = _lock_digest()
    if _is_current(digest):
        return
    with _install_lock():
        if _is_current(digest):
            return
        try:
            result = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"],
                cwd=NODE_DIR,
                capture_output=True,
                text=True,
                check=False,
                timeout=INSTALL_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired as exc:
            raise LibreChatClientUnavailable(
                f"`npm ci` in {NODE_DIR} took over {INSTALL_TIMEOUT_S:.0f} s"
            ) from exc
        if result.returncode != 0:
            raise LibreChatClientUnavailable(
                f"`npm ci` in {NODE_DIR} failed ({result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}"
            )
        _STAMP.write_text(digest + "\n")


def _client_env() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if not _AMBIENT_ENV.match(name)}


def run_librechat(job: dict[str, Any], timeout_s: float = 60) -> dict[str, Any]:
    """Send one request through LibreChat's client stack and return client.mjs's result.

    Without `timeoutMs` in the job the client aborts itself 5 s before `timeout_s`, so
    a hung gateway comes back as `{"ok": false, "name": "HarnessTimeout", ...}`.
    """
    ensure_installed()
    payload = dict(job)
    payload.setdefault("timeoutMs", int(max(1.0, timeout_s - 5.0) * 1000))
    try:
        result = subprocess.run(
            [_tool("node"), str(CLIENT)],
            cwd=NODE_DIR,
            input=json.dumps(payload),
            capture_output=True,
            text=True,
            encoding="utf-8",
            check=False,
            timeout=timeout_s,
            env=_client_env(),
        )
    except subprocess.TimeoutExpired as exc:
        raise LibreChatClientError(f"client.mjs gave no answer within {timeout_s} s") from exc
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    try:
        parsed = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError) as exc:
        raise LibreChatClientError(
            f"client.mjs exited {result.returncode} without a JSON result:\n"
            f"stdout: {result.stdout}\nstderr: {result.stderr}"
        ) from exc
    if not isinstance(parsed, dict):
        raise LibreChatClientError(f"client.mjs answered a non-object: {lines[-1]}")
    return parsed
