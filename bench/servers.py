"""The servers a benchmark run measures: the dev provider, a gateway in front of it and, with
LiteLLM installed, the LiteLLM proxy and a second gateway in front of that.

They are started, awaited and stopped by `solaris.cli.processes`, as `solaris demo` and the
tests start theirs: a server is waited for as long as it works at starting (a bound of CPU
seconds), and each stops with SIGTERM, then SIGKILL past a bound, last started first. The
commands that start them are kept, to be printed in the report as the way to reproduce it.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import LITELLM_BIN, LITELLM_DIR, REPO, log
from solaris.cli.processes import (
    Child,
    free_port,
    running,
    solaris_command,
    start,
    stop,
    wait_ready,
)

# CPU-seconds LiteLLM may use before it is live: it uses ~30 on this machine (a gateway ~3).
LITELLM_READY_CPU_S_MAX = 150.0
# Settings of ours LiteLLM would pick up from the environment: a database, provider keys.
LITELLM_AMBIENT = ("DATABASE_URL", "DIRECT_URL", "LITELLM_", "OPENAI_", "ANTHROPIC_", "AZURE_")


@dataclass
class Servers:
    provider: Child
    gateway: Child
    provider_port: int
    gateway_port: int
    commands: list[str]
    # With LiteLLM: the proxy in front of the provider, and the chain's gateway in front of it.
    litellm: Child | None = None
    litellm_port: int = 0
    litellm_key: str = ""
    chain: Child | None = None
    chain_port: int = 0

    def port(self, target: str) -> int:
        return {
            "direct": self.provider_port,
            "gateway": self.gateway_port,
            "litellm": self.litellm_port,
            "chain": self.chain_port,
        }[target]

    def gateway_of(self, target: str) -> Child:
        """The gateway that answers `target` (the first one for targets without a gateway)."""
        return self.chain if target == "chain" and self.chain is not None else self.gateway


def start_solaris(
    name: str, argv: list[str], env: dict[str, str], log_path: Path, ready_url: str
) -> Child:
    """`solaris ARGV…` with `env` over this process's environment; ready when `ready_url`
    answers with any status."""
    return start(
        name,
        solaris_command(*argv),
        log_path,
        ready_url,
        env={**os.environ, **env},
        cwd=REPO,
        ready_status=None,
    )


def litellm_config(provider_url: str, master_key: str) -> dict[str, Any]:
    """tests/test_litellm.py's configuration: one model, no database, a master key."""
    return {
        "model_list": [
            {
                "model_name": "gpt-4o-mini",
                "litellm_params": {
                    "model": "openai/gpt-4o-mini",
                    "api_base": provider_url,
                    "api_key": "sk-dev-provider",
                },
            }
        ],
        "general_settings": {"master_key": master_key},
    }


def start_litellm(config: Path, port: int, log_path: Path) -> Child:
    """The LiteLLM proxy, one worker, ready when its liveliness probe answers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(LITELLM_AMBIENT)}
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # never fetch the price list: no network here
    argv = [str(LITELLM_BIN), "--config", str(config), "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--num_workers", "1"]
    live = f"http://127.0.0.1:{port}/health/liveliness"
    return start(
        "LiteLLM proxy",
        argv,
        log_path,
        live,
        env=env,
        cwd=REPO,
        ready_status=None,
        ready_cpu_s_max=LITELLM_READY_CPU_S_MAX,
    )


def litellm_version() -> str:
    found = sorted(LITELLM_DIR.glob("lib/python*/site-packages/litellm-*.dist-info"))
    return found[-1].name.removesuffix(".dist-info").split("-", 1)[1] if found else "unknown"


def shown_env(env: dict[str, str]) -> str:
    return " ".join(
        f"{k}={'<random>' if k == 'SOLARIS_SECRET_KEY' else v}" for k, v in sorted(env.items())
    )


def migrate(env: dict[str, str]) -> None:
    migrated = subprocess.run(
        solaris_command("migrate"),
        env={**os.environ, **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    if migrated.returncode != 0:
        raise RuntimeError(f"solaris migrate failed:\n{migrated.stdout}\n{migrated.stderr}")


@contextlib.contextmanager
def servers(
    gateway_env: dict[str, str], workdir: Path, with_litellm: bool = False
) -> Iterator[Servers]:
    """The dev provider and a gateway in front of it; with `with_litellm`, also the LiteLLM proxy
    in front of the provider and a second gateway (same database and Redis) in front of LiteLLM.
    On the way out each is stopped, last started first."""
    provider_port, gateway_port = free_port(), free_port()
    env = {**gateway_env, "SOLARIS_UPSTREAM_BASE_URL": f"http://127.0.0.1:{provider_port}/v1"}
    env["SOLARIS_PORT"] = str(gateway_port)
    shown = shown_env(env)
    commands = [
        f"uv run solaris dev-provider --port {provider_port}",
        f"{shown} uv run solaris migrate",
        f"{shown} uv run solaris serve",
    ]
    migrate(env)
    with contextlib.ExitStack() as stack:
        provider_argv = ["dev-provider", "--port", str(provider_port)]
        provider_ready = f"http://127.0.0.1:{provider_port}/health"
        provider_log = workdir / "provider.log"
        provider = start_solaris("provider", provider_argv, {}, provider_log, provider_ready)
        stack.enter_context(running(provider))
        litellm: Child | None = None
        if with_litellm:  # started first: it takes a while to import
            litellm_port, litellm_key = free_port(), "sk-bench-litellm-" + secrets.token_hex(8)
            config = workdir / "litellm-config.yaml"
            provider_url = f"http://127.0.0.1:{provider_port}/v1"
            config.write_text(json.dumps(litellm_config(provider_url, litellm_key), indent=2))
            litellm_log = workdir / "litellm.log"
            log(f"starting LiteLLM {litellm_version()} (log {litellm_log})")
            litellm = start_litellm(config, litellm_port, litellm_log)
            stack.callback(stop, litellm.process)
        gateway_ready = f"http://127.0.0.1:{gateway_port}/healthz"
        gateway = start_solaris("gateway", ["serve"], env, workdir / "gateway.log", gateway_ready)
        stack.enter_context(running(gateway))
        srv = Servers(provider, gateway, provider_port, gateway_port, commands)
        if litellm is not None:
            wait_ready([litellm])
            chain_port = free_port()
            chain_env = {
                **env,
                "SOLARIS_UPSTREAM_BASE_URL": f"http://127.0.0.1:{litellm_port}/v1",
                "SOLARIS_UPSTREAM_API_KEY": litellm_key,
                "SOLARIS_PORT": str(chain_port),
            }
            chain_log, chain_ready = (
                workdir / "chain-gateway.log",
                f"http://127.0.0.1:{chain_port}/healthz",
            )
            chain = start_solaris("chain's gateway", ["serve"], chain_env, chain_log, chain_ready)
            stack.enter_context(running(chain))
            srv.litellm, srv.litellm_port, srv.litellm_key = litellm, litellm_port, litellm_key
            srv.chain, srv.chain_port = chain, chain_port
            commands += [
                "# LiteLLM (tests/test_litellm.py's config: gpt-4o-mini → openai/gpt-4o-mini at "
                "the provider, master key, no database):",
                f"LITELLM_LOCAL_MODEL_COST_MAP=True .tools/litellm/bin/litellm --config "
                f"litellm-config.yaml --host 127.0.0.1 --port {litellm_port} --num_workers 1",
                "# the chain's gateway (same database and Redis), in front of LiteLLM:",
                f"{shown_env(chain_env).replace(litellm_key, '<master key>')} uv run solaris serve",
            ]
        yield srv
