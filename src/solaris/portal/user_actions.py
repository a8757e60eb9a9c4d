"""The dashboard's changes to one user: each reads its form and calls one `Operations` method.

A bad field raises ValueError (the page shows it); `Operations` raises BadRequest/NotFound for
what it refuses. Only a key rotation returns something to show: the new key.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

from starlette.datastructures import FormData

from solaris.operations.core import Actor, Operations

__all__ = ["ACTIONS", "DONE", "UserAction"]

UserAction = Callable[[Operations, Actor, int, FormData], Awaitable[str | None]]
EXPIRY_DAYS_MAX = 3660


def _text(form: FormData, name: str) -> str:
    value = form.get(name, "")
    return value.strip() if isinstance(value, str) else ""


def _whole(form: FormData, name: str, *, required: bool = True) -> int | None:
    text = _text(form, name)
    if not text and not required:
        return None
    if not text.isdigit() or int(text) <= 0:
        raise ValueError(f"{name}: a whole number above zero")
    return int(text)


async def grant(operations: Operations, actor: Actor, user_id: int, form: FormData) -> None:
    tokens = _whole(form, "tokens")
    assert tokens is not None
    days = _whole(form, "expires_in_days", required=False)
    if days is not None and days > EXPIRY_DAYS_MAX:
        raise ValueError(f"expires_in_days: at most {EXPIRY_DAYS_MAX}")
    expires_at = None if days is None else operations.clock() + timedelta(days=days)
    await operations.grant(actor, user_id, tokens, _text(form, "note"), expires_at)


async def deduct(operations: Operations, actor: Actor, user_id: int, form: FormData) -> None:
    tokens = _whole(form, "tokens")
    assert tokens is not None
    await operations.deduct(actor, user_id, tokens, _text(form, "note"))


async def set_plan(operations: Operations, actor: Actor, user_id: int, form: FormData) -> None:
    await operations.set_plan(actor, user_id, _text(form, "plan"))


async def block(operations: Operations, actor: Actor, user_id: int, form: FormData) -> None:
    await operations.block(actor, user_id, _text(form, "reason"))


async def unblock(operations: Operations, actor: Actor, user_id: int, form: FormData) -> None:
    await operations.unblock(actor, user_id)


async def rotate_key(operations: Operations, actor: Actor, user_id: int, form: FormData) -> str:
    return await operations.rotate_key(actor, user_id)


ACTIONS: dict[str, UserAction] = {
    "grant": grant,
    "deduct": deduct,
    "plan": set_plan,
    "block": block,
    "unblock": unblock,
    "rotate-key": rotate_key,
}
DONE = frozenset({"grant", "deduct", "plan", "block", "unblock"})  # the `?done=` flashes
