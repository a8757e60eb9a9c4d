"""What the operations and the faces need of a gateway, and stand-ins for where there is none.

The admin API and the pages run inside a gateway (`solaris.app.Gateway` is a `Running`): a
change there also updates the request path's caches. The CLI has only a database:
`Standalone` gives it a ledger and nothing to tell. The faces name these protocols, never the
gateway itself, so imports run from the app down to them and not back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from solaris.config import Settings
from solaris.ledger.ledger import Ledger
from solaris.ledger.users import Users
from solaris.store.database import Database

if TYPE_CHECKING:  # the CLI starts faster without Redis' and Prometheus' clients
    from solaris.limits import RateLimiter
    from solaris.observability.metrics import Metrics
    from solaris.operations.failures import SignInFailures
    from solaris.operations.purchases import Purchases
    from solaris.store.cache import IdentityCache

__all__ = ["RequestPath", "Resources", "Running", "Standalone"]


class RequestPath(Protocol):
    """The request path's own memory of a user, told when a change makes it stale."""

    def forget(self, user_id: int) -> None: ...


class Resources(Protocol):
    """What the operations use of a gateway (`solaris.app.Gateway` has all of it)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def database(self) -> Database: ...
    @property
    def ledger(self) -> Ledger: ...
    @property
    def users(self) -> Users: ...
    @property
    def metrics(self) -> Metrics | None: ...
    @property
    def identity(self) -> RequestPath | None: ...
    @property
    def cache(self) -> IdentityCache | None: ...


class Running(Resources, Protocol):
    """A serving gateway, as the admin API and the pages use it."""

    @property
    def limiter(self) -> RateLimiter: ...
    @property
    def sign_in_failures(self) -> SignInFailures: ...
    @property
    def purchases(self) -> Purchases: ...
    async def readiness(self) -> dict[str, str]: ...


class Standalone:
    """Resources for the CLI: a ledger on the database, no request path to tell."""

    def __init__(self, settings: Settings, database: Database) -> None:
        self.settings = settings
        self.database = database
        self.ledger = Ledger(database, zone=settings.zone)
        self.users = Users(self.ledger)
        self.metrics: Metrics | None = None
        self.identity: RequestPath | None = None
        self.cache: IdentityCache | None = None
