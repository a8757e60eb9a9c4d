"""The gateway's configuration: `Settings` (environment variables `SOLARIS_*` over an optional
YAML file), read and validated once at start, and the things it lists (`items`)."""

from solaris.config.first_run import missing_setup
from solaris.config.items import (
    DEFAULT_MODEL_POLICY,
    HOSTED_TOOLS,
    LONG_CONTEXT_TOKENS_MAX,
    TOOL_PRICE_MAX,
    CreditPack,
    HostedTool,
    ModelPolicy,
    PlanConfig,
    ServiceAccount,
    UsageWindow,
    rollover_problem,
)
from solaris.config.settings import Settings, load_settings, sqlite_path

__all__ = [
    "DEFAULT_MODEL_POLICY",
    "HOSTED_TOOLS",
    "LONG_CONTEXT_TOKENS_MAX",
    "TOOL_PRICE_MAX",
    "CreditPack",
    "HostedTool",
    "ModelPolicy",
    "PlanConfig",
    "ServiceAccount",
    "Settings",
    "UsageWindow",
    "load_settings",
    "missing_setup",
    "rollover_problem",
    "sqlite_path",
]
