"""Every word an alert says, in pt-BR and English: e-mails, webhook and system sentences.

HTML is built from the same sentences, every value escaped (how values read: `formats`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Any

from solaris.texts import Language
from solaris.texts.formats import format_tokens, moment_in_words

__all__ = [
    "FOOTER",
    "GREETING",
    "EmailText",
    "email_html",
    "operator_email",
    "system_sentence",
    "threshold_email",
    "threshold_sentence",
]


@dataclass(frozen=True)
class EmailText:
    subject: str
    text: str
    html: str


# One dict per (language, near | out): near = a threshold below 100%, out = the tokens ran out.
THRESHOLD_EMAIL: dict[Language, dict[str, dict[str, str]]] = {
    "pt-BR": {
        "near": {
            "subject": "Você usou {percent}% dos seus tokens",
            "usage": "Você já usou {percent}% dos tokens deste período ({used} de {total}).",
            "balance": "Saldo restante: {balance} tokens.",
            "period": "O período atual termina em {period_end}, quando sua franquia é renovada.",
            "action": "Para não ficar sem tokens, compre mais créditos:",
        },
        "out": {
            "subject": "Seus tokens acabaram",
            "usage": "Você usou todos os tokens deste período ({used} de {total}). Novas "
            "mensagens ficam bloqueadas até a renovação ou até você comprar mais créditos.",
            "balance": "Saldo: {balance} tokens.",
            "period": "Sua franquia será renovada em {period_end}.",
            "action": "Compre mais créditos para continuar agora:",
        },
    },
    "en": {
        "near": {
            "subject": "You have used {percent}% of your tokens",
            "usage": "You have used {percent}% of this period's tokens ({used} of {total}).",
            "balance": "Balance left: {balance} tokens.",
            "period": "The current period ends on {period_end}, when your allowance renews.",
            "action": "To avoid running out, buy more credits:",
        },
        "out": {
            "subject": "Your tokens ran out",
            "usage": "You have used all of this period's tokens ({used} of {total}). New "
            "messages are blocked until your allowance renews or you buy more credits.",
            "balance": "Balance: {balance} tokens.",
            "period": "Your allowance renews on {period_end}.",
            "action": "Buy more credits to continue now:",
        },
    },
}
OWED: dict[Language, str] = {
    "pt-BR": "Você deve {owed} tokens; a próxima compra ou concessão paga essa dívida primeiro.",
    "en": "You owe {owed} tokens; your next purchase or grant pays this debt first.",
}
GREETING: dict[Language, tuple[str, str]] = {
    "pt-BR": ("Olá, {name}!", "Olá!"),
    "en": ("Hi {name},", "Hi,"),
}
BUTTON: dict[Language, str] = {"pt-BR": "Comprar créditos", "en": "Buy credits"}
FOOTER: dict[Language, str] = {
    "pt-BR": "Mensagem automática do SOLARIS Gateway; não é preciso respondê-la.",
    "en": "An automatic message from SOLARIS Gateway; there is no need to reply.",
}


def threshold_email(
    language: Language,
    *,
    name: str | None,
    percent: int,
    used: int,
    total: int,
    balance: int,
    period_end: datetime,
    portal_url: str,
    timezone: str | None = None,
) -> EmailText:
    words = THRESHOLD_EMAIL[language]["out" if percent >= 100 else "near"]
    values = {
        "percent": str(percent),
        "used": format_tokens(language, used),
        "total": format_tokens(language, total),
        "balance": format_tokens(language, balance),
        "period_end": moment_in_words(language, period_end, timezone),
    }
    greeting = GREETING[language][0].format(name=name) if name else GREETING[language][1]
    lines = [words[part].format(**values) for part in ("usage", "balance", "period", "action")]
    if balance < 0:  # the provider billed more than was held: the debt, as the portal says it
        lines[1] = OWED[language].format(owed=format_tokens(language, -balance))
    text = "\n\n".join([greeting, *lines[:3], f"{lines[3]}\n{portal_url}", FOOTER[language]])
    html = email_html([greeting, *lines], portal_url, BUTTON[language], FOOTER[language])
    return EmailText(words["subject"].format(**values), text + "\n", html)


def email_html(paragraphs: list[str], url: str, button: str, footer: str) -> str:
    """An e-mail's HTML part: the paragraphs, one button to `url`, the footer; all escaped."""
    body = "".join(f"<p>{escape(p)}</p>\n" for p in paragraphs)
    link = (
        f'<p><a href="{escape(url)}" style="display:inline-block;padding:10px 18px;'
        'background:#f59e0b;color:#111;border-radius:6px;text-decoration:none;font-weight:600">'
        f'{escape(button)}</a></p>\n<p style="font-size:13px;color:#555">{escape(url)}</p>\n'
    )
    return (
        '<!doctype html>\n<html><body style="font-family:system-ui,sans-serif;line-height:1.5;'
        f'color:#111;max-width:560px">\n{body}{link}'
        f'<p style="font-size:12px;color:#777">{escape(footer)}</p>\n</body></html>\n'
    )


# What the operator's webhook (Slack, Teams) shows as is.
THRESHOLD_SENTENCE: dict[Language, dict[str, str]] = {
    "pt-BR": {
        "near": "{who} usou {percent}% dos tokens do período ({used} de {total}; saldo "
        "{balance}; o período termina em {period_end}).",
        "out": "{who} ficou sem tokens ({used} de {total} usados; o período termina em "
        "{period_end}).",
    },
    "en": {
        "near": "{who} has used {percent}% of the period's tokens ({used} of {total}; balance "
        "{balance}; the period ends on {period_end}).",
        "out": "{who} has run out of tokens ({used} of {total} used; the period ends on "
        "{period_end}).",
    },
}


def threshold_sentence(
    language: Language,
    *,
    who: str,
    percent: int,
    used: int,
    total: int,
    balance: int,
    period_end: datetime,
    timezone: str | None = None,
) -> str:
    template = THRESHOLD_SENTENCE[language]["out" if percent >= 100 else "near"]
    return template.format(
        who=who,
        percent=percent,
        used=format_tokens(language, used),
        total=format_tokens(language, total),
        balance=format_tokens(language, balance),
        period_end=moment_in_words(language, period_end, timezone),
    )


SYSTEM_SENTENCE: dict[Language, dict[str, str]] = {
    "pt-BR": {
        "upstream_error_rate": "Provedor {provider}: {error_rate_percent}% das requisições "
        "falharam nos últimos {window_s} s (limite {threshold_percent}%).",
        "upstream_error_rate_recovered": "Provedor {provider} normalizado: taxa de erro de "
        "{error_rate_percent}% nos últimos {window_s} s.",
        "upstream_latency": "Provedor {provider}: latência p95 de {p95_ms} ms nos últimos "
        "{window_s} s (limite {threshold_ms} ms).",
        "upstream_latency_recovered": "Provedor {provider} normalizado: latência p95 de "
        "{p95_ms} ms.",
        "database_unreachable": "Banco de dados inacessível: {error}.",
        "database_recovered": "Banco de dados acessível de novo.",
        "redis_unreachable": "Redis inacessível: {error}.",
        "redis_recovered": "Redis acessível de novo.",
        "settlements_journaled": "Cobranças à espera do banco de dados no diário local do "
        "gateway ({error}); serão registradas assim que ele responder.",
        "settlements_replayed": "As cobranças do diário local foram registradas no banco de dados.",
        "payment_mismatch": "Pagamento do pedido {order} ({provider}) de {paid}, mas o pedido é "
        "de {expected}: nenhum crédito foi dado. Confira no painel do provedor.",
    },
    "en": {
        "upstream_error_rate": "Provider {provider}: {error_rate_percent}% of requests failed "
        "in the last {window_s} s (threshold {threshold_percent}%).",
        "upstream_error_rate_recovered": "Provider {provider} recovered: error rate "
        "{error_rate_percent}% in the last {window_s} s.",
        "upstream_latency": "Provider {provider}: p95 latency {p95_ms} ms in the last "
        "{window_s} s (threshold {threshold_ms} ms).",
        "upstream_latency_recovered": "Provider {provider} recovered: p95 latency {p95_ms} ms.",
        "database_unreachable": "Database unreachable: {error}.",
        "database_recovered": "Database reachable again.",
        "redis_unreachable": "Redis unreachable: {error}.",
        "redis_recovered": "Redis reachable again.",
        "settlements_journaled": "Settlements are waiting for the database in the gateway's "
        "local journal ({error}); they are recorded as soon as it answers.",
        "settlements_replayed": "The settlements of the local journal are recorded in the "
        "database.",
        "payment_mismatch": "Order {order} ({provider}) was paid {paid} but is for {expected}: "
        "nothing was credited. Check it in the provider's dashboard.",
    },
}
SYSTEM_PREFIX: dict[Language, str] = {"pt-BR": "Alerta do sistema", "en": "System alert"}


def _decimal(language: Language, value: Any) -> Any:
    """46.2 reads 46,2 in Portuguese; other values as they are."""
    if isinstance(value, float) and language == "pt-BR":
        return f"{value:g}".replace(".", ",")
    return value


def system_sentence(language: Language, event: str, data: Mapping[str, Any]) -> str:
    """A known event reads as a sentence; an unknown one (or missing numbers) still says what."""
    template = SYSTEM_SENTENCE[language].get(event)
    if template is not None:
        words = {key: _decimal(language, value) for key, value in data.items()}
        try:
            return template.format_map(words)
        except (KeyError, IndexError, ValueError):
            pass
    details = ", ".join(f"{key}={value}" for key, value in sorted(data.items()))
    return f"{SYSTEM_PREFIX[language]}: {event}" + (f" ({details})" if details else "")


def operator_email(language: Language, severity: str, sentence: str) -> EmailText:
    subject = f"[SOLARIS] {severity.upper()}: {sentence}"
    if len(subject) > 140:  # a subject line, not the whole story
        subject = subject[:139] + "…"
    text = f"{sentence}\n\n{FOOTER[language]}\n"
    html = f"<!doctype html>\n<html><body><p>{escape(sentence)}</p>\n<p>{escape(FOOTER[language])}</p></body></html>\n"
    return EmailText(subject, text, html)
