"""The one error tree of the gateway.

    SolarisError
    ├── ConfigError              a bad setting; start-up stops and names it
    ├── StoreError               the database is unusable (e.g. not migrated)
    │   ├── StoreUnavailable     a database call failed (unreachable, broken connection, …)
    │   └── SettlementLost       a settlement reached neither the database nor the journal
    └── ApiError                 answered to the client in OpenAI's error shape
        ├── BadRequest           400 invalid_request_error
        │   └── MissingUser      400 the LibreChat service key names no user
        ├── Unauthorized         401 invalid_api_key
        ├── Forbidden            403 model_not_allowed
        │   └── UserBlocked      403 user_blocked (an admin blocked the user)
        ├── PaymentRequired      402 insufficient_balance (the block reply of API calls)
        ├── CapReached           402 usage_cap_reached (a usage window or cap, reopening later)
        ├── NotFound             404 unknown_url
        ├── PayloadTooLarge      413
        ├── UnsupportedMediaType 415
        ├── RateLimited          429 rate_limit_exceeded (+ Retry-After)
        │   ├── BalanceHeld      429 balance_held (the user's running requests hold it)
        │   └── CapReachedSoon   429 usage_cap_reached (reopens within a minute)
        ├── InternalError        500 internal_error (a bug: logged with its traceback)
        ├── ServiceUnavailable   503 (database unreachable: fail closed)
        ├── UpstreamUnreachable  502
        └── UpstreamTimeout      504

Dependencies' errors are mapped into this tree at one boundary each: aiohttp's in
`gateway/upstream.py`, the database drivers' (SQLAlchemy, asyncpg, sqlite) in `store/database.py`
(`store_errors`, used by `Database.transaction` and the asyncpg ledger). An endpoint renders an
`ApiError` in its API's shape (`gateway/endpoints`: Anthropic's on /v1/messages).
"""

from __future__ import annotations

import orjson

__all__ = [
    "ApiError",
    "BadRequest",
    "BalanceHeld",
    "CapReached",
    "CapReachedSoon",
    "ConfigError",
    "Forbidden",
    "InternalError",
    "MissingUser",
    "NotFound",
    "PayloadTooLarge",
    "PaymentRequired",
    "RateLimited",
    "ServiceUnavailable",
    "SettlementLost",
    "SolarisError",
    "StoreError",
    "StoreUnavailable",
    "Unauthorized",
    "UnsupportedMediaType",
    "UpstreamTimeout",
    "UpstreamUnreachable",
    "UserBlocked",
    "error_body",
]


class SolarisError(Exception):
    """Root of every error the gateway raises on purpose."""


class ConfigError(SolarisError):
    """A setting is missing or invalid; the message names it."""


class StoreError(SolarisError):
    """The database cannot be used as it is (unmigrated, wrong version)."""


class StoreUnavailable(StoreError):
    """A database call failed: the server is unreachable or went away, a pooled connection
    broke, a statement timed out. The message names the driver's error; the call's transaction
    did not commit, or (a lost reply) committed with an idempotency key a retry will meet."""


class SettlementLost(StoreError):
    """A request's usage could be neither settled nor written to the local journal: its
    answer must not be given away."""


def error_body(
    message: str, type_: str, code: str | None = None, param: str | None = None
) -> bytes:
    """OpenAI's error envelope: `{"error": {"message", "type", "param", "code"}}`."""
    return orjson.dumps(
        {"error": {"message": message, "type": type_, "param": param, "code": code}}
    )


class ApiError(SolarisError):
    """An error answered to the client; subclasses fix status, type and code."""

    status = 500
    type = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    def body(self) -> bytes:
        return error_body(self.message, self.type, self.code, self.param)


class BadRequest(ApiError):
    status = 400
    type = "invalid_request_error"


class MissingUser(BadRequest):
    """The LibreChat service key came with no user id (header empty, no body `user`); the model
    list answers it with the whole catalogue instead."""


class Unauthorized(ApiError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class Forbidden(ApiError):
    status = 403
    type = "invalid_request_error"
    code = "model_not_allowed"


class UserBlocked(Forbidden):
    """An admin blocked this user: no request is served until they are unblocked."""

    code = "user_blocked"


class RateLimited(ApiError):
    status = 429
    type = "requests"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class BalanceHeld(RateLimited):
    """The balance is there, but the user's own requests still running hold it."""

    code = "balance_held"


class PaymentRequired(ApiError):
    """Not enough balance: never `insufficient_quota`, which LibreChat replaces with its own
    canned text."""

    status = 402
    type = "insufficient_balance"
    code = "insufficient_balance"


class CapReachedSoon(RateLimited):
    """A usage window or cap is full and reopens within a minute: retry then."""

    code = "usage_cap_reached"


class CapReached(ApiError):
    """A usage window or cap is full until a time the message states; buying credits does not
    help, so it is not `insufficient_balance`."""

    status = 402
    type = "usage_cap"
    code = "usage_cap_reached"


class NotFound(ApiError):
    status = 404
    type = "invalid_request_error"
    code = "unknown_url"


class PayloadTooLarge(ApiError):
    status = 413
    type = "invalid_request_error"
    code = "payload_too_large"


class UnsupportedMediaType(ApiError):
    status = 415
    type = "invalid_request_error"
    code = "unsupported_media_type"


class InternalError(ApiError):
    status = 500
    type = "server_error"
    code = "internal_error"


class ServiceUnavailable(ApiError):
    status = 503
    type = "server_error"
    code = "service_unavailable"


class UpstreamUnreachable(ApiError):
    status = 502
    type = "upstream_error"
    code = "upstream_unreachable"


class UpstreamTimeout(ApiError):
    status = 504
    type = "upstream_error"
    code = "upstream_timeout"
