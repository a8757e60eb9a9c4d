"""What a user reads when a cap refuses a request: which limit, and when it reopens."""

from __future__ import annotations

from datetime import datetime

from solaris.texts import Language
from solaris.texts.formats import format_tokens, moment_in_words

__all__ = ["SOON_S", "cap_refusal"]

SOON_S = 60  # a cap reopening within this long is a "try again in N s"

CAP_TEXT: dict[Language, dict[str, str]] = {
    "pt-BR": {
        "day": "Você atingiu o limite diário do seu plano ({plan}: {tokens} tokens por dia).",
        "week": "Você atingiu o limite semanal do seu plano ({plan}: {tokens} tokens por semana).",
        "hours": "Você atingiu o limite do seu plano de {tokens} tokens a cada {hours} h ({plan}).",
        "model": "Você atingiu o limite do seu plano para {pattern} ({plan}: {tokens} tokens "
        "por período). Os outros modelos do plano continuam disponíveis.",
        "own_day": "Você atingiu o limite diário que definiu para si ({tokens} tokens por dia). "
        "Você pode mudá-lo no portal: {portal}/portal/limit",
        "own_month": "Você atingiu o limite mensal que definiu para si ({tokens} tokens por "
        "mês). Você pode mudá-lo no portal: {portal}/portal/limit",
        "soon": "Ele reabre em {seconds} s.",
        "later": "Ele reabre em {when}.",
    },
    "en": {
        "day": "You have reached your plan's daily limit ({plan}: {tokens} tokens a day).",
        "week": "You have reached your plan's weekly limit ({plan}: {tokens} tokens a week).",
        "hours": "You have reached your plan's limit of {tokens} tokens every {hours} h ({plan}).",
        "model": "You have reached your plan's limit for {pattern} ({plan}: {tokens} tokens "
        "a period). The plan's other models are still available.",
        "own_day": "You have reached the daily limit you set yourself ({tokens} tokens a day). "
        "You can change it in the portal: {portal}/portal/limit",
        "own_month": "You have reached the monthly limit you set yourself ({tokens} tokens a "
        "month). You can change it in the portal: {portal}/portal/limit",
        "soon": "It reopens in {seconds} s.",
        "later": "It reopens on {when}.",
    },
}


def cap_refusal(
    language: Language,
    kind: str,
    *,
    plan: str,
    tokens: int,
    hours: int | None,
    pattern: str | None,
    reopens: datetime,
    wait_s: int,
    timezone: str,
    portal: str,
) -> str:
    """The limit, then when it reopens: in seconds when soon, else a local date and time."""
    words = CAP_TEXT[language]
    limit = words[kind].format(
        plan=plan,
        tokens=format_tokens(language, tokens),
        hours=hours,
        pattern=pattern,
        portal=portal.rstrip("/"),
    )
    if wait_s <= SOON_S:
        return f"{limit} {words['soon'].format(seconds=max(1, wait_s))}"
    return f"{limit} {words['later'].format(when=moment_in_words(language, reopens, timezone))}"
