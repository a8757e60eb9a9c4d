"""`solaris alerts`: what the alert outbox sent, still holds, or gave up on."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from solaris.cli._common import JsonOption, print_rows, run_job

if TYPE_CHECKING:  # imported by the commands that use them (see _common)
    from solaris.config import Settings
    from solaris.store.database import Database

__all__ = ["alerts_app"]

alerts_app = typer.Typer(no_args_is_help=True, help="Alerts: sent, pending and failed.")

State = Literal["pending", "sent", "failed"]


@alerts_app.command("list")
def alerts_list(
    state: Annotated[State | None, typer.Option(help="Only alerts in this state.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    as_json: JsonOption = False,
) -> None:
    """The newest alerts first. Example: solaris alerts list --state failed"""
    from solaris.store.outbox import list_alerts

    async def job(_settings: Settings, database: Database) -> list[dict[str, Any]]:
        async with database.transaction() as conn:
            rows = await list_alerts(conn, state, limit)
        return [
            {
                "id": row.id,
                "created_at": row.created_at.isoformat(timespec="seconds"),
                "kind": row.kind,
                "event": _event(row.kind, row.payload),
                "channel": row.channel,
                "recipient": row.recipient,
                "state": row.state,
                "attempts": row.attempts,
                "sent_at": row.sent_at.isoformat(timespec="seconds") if row.sent_at else "",
                "last_error": row.last_error or "",
                **({"payload": row.payload} if as_json else {}),
            }
            for row in rows
        ]

    columns = ["id", "created_at", "kind", "event", "channel", "recipient", "state", "attempts"]
    print_rows(run_job(job), as_json, [*columns, "last_error"])


def _event(kind: str, payload: dict[str, Any]) -> str:
    """A few words on what happened: the threshold and user, or the system event."""
    data = payload.get("data", payload)
    if kind == "user_threshold":
        user = payload.get("user_id") or (payload.get("user") or {}).get("id")
        return f"{data.get('threshold')}% user {user}"
    return str(data.get("event", ""))
