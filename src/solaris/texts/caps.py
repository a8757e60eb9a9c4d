"""What a user reads about a usage window or cap: the refusal (which limit, and when it reopens),
the line a streamed reply gets when it crosses a threshold of one, and the alert's e-mail."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from solaris.texts import Language
from solaris.texts.alerts import FOOTER, GREETING, EmailText, email_html
from solaris.texts.formats import format_tokens, moment_in_words

__all__ = ["SOON_S", "cap_alert_email", "cap_notice", "cap_refusal", "cap_sentence"]

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


LIMIT_NAME: dict[Language, dict[str, str]] = {
    "pt-BR": {
        "day": "limite diário",
        "week": "limite semanal",
        "hours": "limite de {hours} h",
        "model": "limite de {pattern}",
        "own_day": "limite diário que você definiu",
        "own_month": "limite mensal que você definiu",
    },
    "en": {
        "day": "daily limit",
        "week": "weekly limit",
        "hours": "{hours} h limit",
        "model": "limit for {pattern}",
        "own_day": "daily limit you set",
        "own_month": "monthly limit you set",
    },
}
NOTICE: dict[Language, dict[str, str]] = {
    "pt-BR": {
        "near": "⚠️ Você já usou {percent}% do seu {limit} ({used} de {tokens} tokens).",
        "out": "⚠️ Você atingiu o seu {limit} ({tokens} tokens).",
        "renews": "Ele recomeça em {when}.",
        "subject_near": "Você usou {percent}% do seu {limit}",
        "subject_out": "Você atingiu o seu {limit}",
        "button": "Ver meus limites",
    },
    "en": {
        "near": "⚠️ You have used {percent}% of your {limit} ({used} of {tokens} tokens).",
        "out": "⚠️ You have reached your {limit} ({tokens} tokens).",
        "renews": "It starts afresh on {when}.",
        "subject_near": "You have used {percent}% of your {limit}",
        "subject_out": "You have reached your {limit}",
        "button": "See my limits",
    },
}


def _limit(language: Language, data: dict[str, Any]) -> str:
    return LIMIT_NAME[language][data["kind"]].format(hours=data["hours"], pattern=data["pattern"])


def cap_notice(language: Language, data: dict[str, Any]) -> str:
    """The line a streamed reply ends with when it crossed a threshold of a cap; `data` is the
    alert's (`ledger.cap_alerts`)."""
    words = NOTICE[language]
    return words["out" if data["percent"] >= 100 else "near"].format(
        percent=data["percent"],
        limit=_limit(language, data),
        used=format_tokens(language, data["used"]),
        tokens=format_tokens(language, data["tokens"]),
    )


def cap_sentence(language: Language, who: str, data: dict[str, Any]) -> str:
    """The alert in one sentence, for an operator's webhook."""
    return f"{who}: {cap_notice(language, data).removeprefix('⚠️ ')}"


def cap_alert_email(language: Language, name: str | None, data: dict[str, Any]) -> EmailText:
    words = NOTICE[language]
    lines = [cap_notice(language, data).removeprefix("⚠️ ")]
    if data.get("until"):
        until = datetime.fromisoformat(data["until"])
        lines.append(
            words["renews"].format(when=moment_in_words(language, until, data["timezone"]))
        )
    subject = words["subject_out" if data["percent"] >= 100 else "subject_near"].format(
        percent=data["percent"], limit=_limit(language, data)
    )
    greeting = GREETING[language][0].format(name=name) if name else GREETING[language][1]
    url = str(data["limits_url"])
    text = "\n\n".join([greeting, *lines, f"{words['button']}:\n{url}", FOOTER[language]])
    html = email_html([greeting, *lines], url, words["button"], FOOTER[language])
    return EmailText(subject, text + "\n", html)
