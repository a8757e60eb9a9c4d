"""What a first `make run` has not been told: the first log line a newcomer reads."""

from __future__ import annotations

from solaris.config.settings import Settings

__all__ = ["README_LIBRECHAT_SECTION", "README_UPSTREAM_SECTION", "missing_setup"]

# The README sections that say how to set what `missing_setup` names.
README_UPSTREAM_SECTION = "Put LiteLLM or OpenAI behind it"
README_LIBRECHAT_SECTION = "Point LibreChat at it"


def missing_setup(settings: Settings) -> dict[str, str]:
    """What a first `make run` has not been told, by setting name, in plain words: an upstream
    and LibreChat's service key. The gateway starts without them (the embedded default is the
    point); its first log line and /readyz say this much, and where to go next."""
    missing = {}
    if "upstream_base_url" not in settings.model_fields_set:
        missing["SOLARIS_UPSTREAM_BASE_URL"] = (
            f"No upstream is set, so chats go to {settings.upstream_base_url} (a LiteLLM "
            "proxy's default address) and fail while nothing answers there. To see a metered "
            "chat without any provider account, run `make demo`; to set an upstream, see "
            f'README.md, section "{README_UPSTREAM_SECTION}".'
        )
    if not settings.librechat_keys:
        missing["SOLARIS_LIBRECHAT_KEYS"] = (
            "No LibreChat service key is set, so LibreChat cannot call the gateway; only "
            "per-user keys (`solaris keys create USER`) can. See README.md, section "
            f'"{README_LIBRECHAT_SECTION}".'
        )
    return missing
