"""The one `Settings` object: environment variables `SOLARIS_*` over an optional YAML file.

Precedence (highest first): init arguments, environment, the YAML file named by
`SOLARIS_CONFIG`, defaults. A bad value stops start-up with `ConfigError`, which names the
setting (`solaris serve` prints it and exits 2).
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from solaris.clock import DEFAULT_TIMEZONE
from solaris.config.items import (
    DEFAULT_MODEL_POLICY,
    CreditPack,
    ModelPolicy,
    PlanConfig,
    ServiceAccount,
)
from solaris.errors import ConfigError

__all__ = ["Settings", "load_settings", "sqlite_path"]


AlertChannel = Literal["email", "webhook"]


def _split_keys(value: Any) -> Any:
    """Accept `a,b` from an env var as well as a YAML list."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SOLARIS_", extra="forbid")

    # Upstream: any OpenAI-compatible base URL (LiteLLM proxy, OpenAI, vLLM, Ollama).
    upstream_base_url: str = "http://127.0.0.1:4000/v1"
    upstream_api_key: SecretStr | None = None
    upstream_connect_timeout_s: float = Field(default=5.0, gt=0)
    upstream_read_timeout_s: float = Field(default=120.0, gt=0)  # longest silence between bytes
    stream_seconds_max: float = Field(default=600.0, gt=0)  # longest whole upstream call

    # Identity.
    librechat_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    service_accounts: Annotated[list[ServiceAccount], NoDecode] = Field(default_factory=list)
    user_id_header: str = "X-LibreChat-User-Id"
    user_email_header: str = "X-LibreChat-User-Email"
    conversation_id_header: str = "X-LibreChat-Conversation-Id"

    # Storage.
    database_url: str = "sqlite:///data/solaris.db"
    database_pool_size: int = Field(default=10, ge=1, le=200)  # request-path connections
    redis_url: str | None = None
    migrate_on_start: bool = False  # `solaris serve` applies migrations first (containers)
    identity_cache_ttl_s: float = Field(default=60.0, ge=0)

    # Money.
    default_allowance_tokens: int = Field(default=100_000, ge=0)
    default_max_completion_tokens: int = Field(default=4096, gt=0)
    min_completion_tokens: int = Field(default=16, gt=0)  # below this a request is blocked
    # Held on top of the estimate for a Responses request that continues a conversation the
    # provider stores (previous_response_id, conversation, item_reference); unset: refused.
    stored_context_tokens: int | None = Field(default=None, ge=0)
    # Hosted tool calls (web search, …) held, and sent as `max_tool_calls` (Responses) or the
    # web search tool's `max_uses` (Messages), for a request that offers a priced hosted tool
    # and sets no limit of its own.
    hosted_tool_calls_max: int = Field(default=4, ge=1, le=128)
    reservation_timeout_s: float = Field(default=900.0, gt=0)
    # Prompt estimates of models counted with a stand-in tokenizer (claude-*, llama-*, …) are
    # held this many times over, so the provider's own count rarely passes the hold.
    unknown_tokenizer_margin: Decimal = Field(default=Decimal("1.3"), ge=1, le=10)
    # Settlements the database could not take wait here (one fsynced file per process);
    # unset: `journal/` beside the SQLite file, or `data/journal` with PostgreSQL.
    journal_dir: Path | None = None
    journal_bytes_max: int = Field(default=64 * 1024 * 1024, ge=4096)
    models: dict[str, ModelPolicy] = Field(default_factory=dict)
    plans: dict[str, PlanConfig] = Field(default_factory=dict)  # best set in YAML

    # Block replies and links.
    public_base_url: str = "http://localhost:8080"
    language: Literal["pt-BR", "en"] = "pt-BR"
    # Calendar periods start at this zone's midnight; pages, reports and e-mails show its time.
    timezone: str = DEFAULT_TIMEZONE
    secret_key: SecretStr | None = None
    link_ttl_s: int = Field(default=900, gt=0)

    # Alerts: thresholds of a user's period, channels, and the system checks.
    alert_thresholds: Annotated[list[int], NoDecode] = Field(default_factory=lambda: [80, 100])
    alert_user_channels: Annotated[list[AlertChannel], NoDecode] = Field(
        default_factory=lambda: list[AlertChannel](["email"])
    )
    alert_system_channels: Annotated[list[AlertChannel], NoDecode] = Field(
        default_factory=lambda: list[AlertChannel](["webhook", "email"])
    )
    alert_operator_email: str | None = None
    alert_chat_notice: bool = (
        True  # a line at the end of the streamed reply that crossed a threshold
    )
    alert_webhook_url: str | None = None
    alert_webhook_secret: SecretStr | None = None
    alert_webhook_timeout_s: float = Field(default=10.0, gt=0, le=120)
    alert_error_rate_max: float = Field(default=0.25, gt=0, le=1)  # per provider, over the window
    alert_latency_p95_max_s: float = Field(default=30.0, gt=0)  # upstream time to first byte
    alert_window_s: int = Field(default=300, ge=10)
    alert_window_requests_min: int = Field(default=20, ge=1)  # fewer say nothing about a rate
    alert_cooldown_s: int = Field(default=900, ge=1)
    alert_attempts_max: int = Field(default=12, ge=1, le=100)
    alert_retry_first_s: float = Field(default=30.0, gt=0, le=3600)  # then doubling, up to an hour
    alert_poll_interval_s: float = Field(default=5.0, gt=0)  # the outbox, when idle
    alert_check_interval_s: float = Field(default=5.0, gt=0)  # the system checks
    # Sent and failed alerts are deleted after this long; more than the longest period, so a
    # period's threshold keys outlive it.
    alert_retention_days: int = Field(default=90, ge=35)

    # E-mail (alerts and portal sign-in links).
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_sender: str = "SOLARIS <no-reply@localhost>"
    smtp_timeout_s: float = Field(default=10.0, gt=0, le=120)

    # Admin API and dashboard (solaris.admin).
    # The API's access token (a JWT); its refresh cookie lasts `dashboard_session_ttl_s`.
    admin_token_ttl_s: int = Field(default=900, ge=60, le=86400)

    # User portal (solaris.portal).
    portal_session_ttl_s: int = Field(default=8 * 3600, ge=60, le=30 * 86400)
    dashboard_session_ttl_s: int = Field(default=8 * 3600, ge=60, le=7 * 86400)  # /admin pages
    login_attempts_per_minute: int = Field(default=10, ge=1, le=1000)  # per address and account
    credit_packs: list[CreditPack] = Field(default_factory=list)  # sold on /portal/buy
    # Credit purchases (solaris.payments): cards through Stripe Checkout when both are set.
    stripe_api_key: SecretStr | None = None
    stripe_webhook_secret: SecretStr | None = None  # the endpoint's signing secret (whsec_…)
    stripe_api_base: str | None = None  # another address for Stripe's API (a local fake)
    # Pix through Mercado Pago when both are set.
    mercadopago_access_token: SecretStr | None = None
    mercadopago_webhook_secret: SecretStr | None = None  # the notifications' signing secret
    mercadopago_api_base: str | None = None  # another address for its API (a local fake)
    orders_per_minute: int = Field(default=5, ge=1, le=100)  # a user may start this many
    receipt_emails: bool = True  # a paid order's buyer gets a receipt (with an SMTP host)
    purchase_contact: str = ""  # how to get credits until payments exist (shown on /portal/buy)
    chat_url: str | None = None  # LibreChat's address: a paid order's page links back to it

    # Operations.
    log_format: Literal["auto", "json", "console"] = "auto"  # auto: console on a terminal
    log_content: bool = False  # put prompts and completions in the request log lines
    metrics_token: SecretStr | None = None  # when set, /metrics wants `Bearer <token>`
    metrics_port: int | None = Field(default=None, ge=1, le=65535)  # serve /metrics there too
    shutdown_grace_s: int = Field(default=30, ge=0)  # in-flight requests get this long

    # Server.
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    workers: int | None = Field(default=None, ge=1, le=64)  # unset: one per core with Redis, else 1
    body_bytes_max: int = Field(default=16 * 1024 * 1024, gt=0)
    # The proxies (addresses or networks) whose X-Forwarded-For and X-Forwarded-Proto are
    # believed; nobody by default, so a client cannot pick its own address for the sign-in limits.
    forwarded_allow_ips: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator(
        "librechat_keys",
        "service_accounts",
        "alert_thresholds",
        "alert_user_channels",
        "alert_system_channels",
        "forwarded_allow_ips",
        mode="before",
    )
    @classmethod
    def _keys(cls, value: Any) -> Any:
        return _split_keys(value)

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _proxies(cls, value: list[str]) -> list[str]:
        # uvicorn takes anything it cannot parse (a typo, or 10.0.0.1/24 with host bits set)
        # for a host name that never matches, and so silently trusts nobody: refuse a typo
        # here, and hand uvicorn networks in their canonical form.
        if value == ["*"]:
            return value
        proxies = []
        for item in value:
            try:
                if "/" in item:
                    proxies.append(str(ipaddress.ip_network(item, strict=False)))
                else:
                    proxies.append(str(ipaddress.ip_address(item)))
            except ValueError:
                raise ValueError(f"not an IP address or network: {item!r} (or a lone *)") from None
        return proxies

    @field_validator(
        "smtp_host",
        "smtp_username",
        "alert_operator_email",
        "alert_webhook_url",
        "chat_url",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        # Compose files pass `${NAME:-}`: an empty variable means "not configured".
        return None if value == "" else value

    @field_validator("alert_thresholds")
    @classmethod
    def _percentages(cls, value: list[int]) -> list[int]:
        if any(not 0 < percent <= 100 for percent in value):
            raise ValueError("thresholds are percentages in 1..100")
        return sorted(set(value))

    @field_validator(
        "upstream_base_url",
        "public_base_url",
        "alert_webhook_url",
        "chat_url",
        "stripe_api_base",
        "mercadopago_api_base",
    )
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"not an IANA time zone: {value!r} (e.g. America/Sao_Paulo)") from None
        return value

    @field_validator("database_url")
    @classmethod
    def _database(cls, value: str) -> str:
        if not value.startswith(("sqlite:", "postgresql:", "postgresql+asyncpg:", "postgres:")):
            raise ValueError("must be a sqlite:/// path or a postgresql:// URL")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis(cls, value: str | None) -> str | None:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis:// URL")
        return value or None

    @model_validator(mode="after")
    def _stripe_keys_together(self) -> Settings:
        if (self.stripe_api_key is None) != (self.stripe_webhook_secret is None):
            raise ValueError(
                "stripe_api_key and stripe_webhook_secret: set both (cards through Stripe) or "
                "neither"
            )
        return self

    @model_validator(mode="after")
    def _mercadopago_keys_together(self) -> Settings:
        if (self.mercadopago_access_token is None) != (self.mercadopago_webhook_secret is None):
            raise ValueError(
                "mercadopago_access_token and mercadopago_webhook_secret: set both (Pix through "
                "Mercado Pago) or neither"
            )
        return self

    @model_validator(mode="after")
    def _packs_named_once(self) -> Settings:
        names = [pack.name for pack in self.credit_packs]
        if len(set(names)) != len(names):
            raise ValueError(f"credit_packs: each pack needs a name of its own (found {names})")
        return self

    @model_validator(mode="after")
    def _one_default_plan(self) -> Settings:
        defaults = [name for name, plan in self.plans.items() if plan.default]
        if self.plans and len(defaults) != 1:
            raise ValueError(f"exactly one plan must be `default: true` (found {defaults})")
        return self

    @model_validator(mode="after")
    def _keys_name_one_caller(self) -> Settings:
        # A key is LibreChat's (the user comes with each request) or one account's, never both.
        bound = [binding.key.get_secret_value() for binding in self.service_accounts]
        librechat = {key.get_secret_value() for key in self.librechat_keys}
        if len(set(bound)) != len(bound) or librechat & set(bound):
            raise ValueError("service_accounts: each key is bound once, and is no LibreChat key")
        return self

    @model_validator(mode="after")
    def _reservation_outlives_calls(self) -> Settings:
        # A reservation must not expire while its own call may still be running, or a slow
        # stream could be served past the balance.
        if self.reservation_timeout_s <= self.stream_seconds_max:
            raise ValueError(
                "reservation_timeout_s must be greater than stream_seconds_max "
                f"({self.reservation_timeout_s} <= {self.stream_seconds_max})"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        yaml_path = os.environ.get("SOLARIS_CONFIG")
        if yaml_path:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=yaml_path))
        return tuple(sources)

    def model_policy(self, model: str) -> ModelPolicy:
        return self.models.get(model, DEFAULT_MODEL_POLICY)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)  # ZoneInfo keeps one instance per name

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite:")

    def journal_directory(self) -> Path:
        if self.journal_dir is not None:
            return self.journal_dir
        if self.is_sqlite:
            return sqlite_path(self.database_url).parent / "journal"
        return Path("data/journal")

    def signing_key(self) -> bytes:
        """The secret for signed links; generated once per SQLite data dir when not set."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value().encode()
        if not self.is_sqlite:
            raise ConfigError("SOLARIS_SECRET_KEY: required with PostgreSQL (shared by instances)")
        path = sqlite_path(self.database_url).parent / "secret_key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(32))
            path.chmod(0o600)
        return path.read_text().strip().encode()


def sqlite_path(database_url: str) -> Path:
    return Path(database_url.split("///", 1)[1])


def load_settings(**overrides: Any) -> Settings:
    """Build the settings, turning validation errors into one message naming each setting."""
    if (path := os.environ.get("SOLARIS_CONFIG")) and not Path(path).is_file():
        raise ConfigError(f"SOLARIS_CONFIG: file not found: {path}")
    try:
        return Settings(**overrides)
    except ValidationError as error:
        problems = []
        for item in error.errors():
            name = "_".join(str(part) for part in item["loc"]) or "settings"
            problems.append(f"SOLARIS_{name.upper()}: {item['msg']}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems)) from None
