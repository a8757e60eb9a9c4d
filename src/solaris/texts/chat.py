"""What the gateway says in the chat, in pt-BR and English: the block replies, the other
refusals a user can meet (rate limits, a model outside the plan, a blocked account, the
database away) and the line appended to a reply that crossed a threshold."""

from __future__ import annotations

from solaris.texts import Language
from solaris.texts.formats import format_tokens

__all__ = [
    "CHAT_TEXT",
    "ERROR_TEXT",
    "HELD_CHAT_TEXT",
    "HELD_ERROR_TEXT",
    "chat_notice",
    "refusal",
    "user_blocked",
]

CHAT_TEXT: dict[Language, str] = {
    "pt-BR": (
        "⚠️ **Seu saldo de tokens acabou.**\n\n"
        "Para continuar conversando, [compre mais créditos]({url}).\n\n"
        "_O link é pessoal e vale por {minutes} minutos._"
    ),
    "en": (
        "⚠️ **You have run out of tokens.**\n\n"
        "To keep chatting, [buy more credits]({url}).\n\n"
        "_This link is personal and valid for {minutes} minutes._"
    ),
}
HELD_CHAT_TEXT: dict[Language, str] = {
    "pt-BR": (
        "⏳ **Seu saldo está reservado para as suas outras mensagens em andamento.**\n\n"
        "Tente de novo assim que elas terminarem."
    ),
    "en": (
        "⏳ **Your balance is held by your other messages still running.**\n\n"
        "Try again as soon as they finish."
    ),
}
ERROR_TEXT: dict[Language, str] = {
    "pt-BR": (
        "Saldo de tokens insuficiente para esta solicitação. "
        "Compre mais créditos em {portal}/portal/buy ou fale com o administrador."
    ),
    "en": (
        "Not enough token balance for this request. "
        "Buy more credits at {portal}/portal/buy or contact your administrator."
    ),
}
HELD_ERROR_TEXT: dict[Language, str] = {
    "pt-BR": (
        "Seu saldo está reservado para as suas outras solicitações em andamento; "
        "tente de novo em {seconds} s."
    ),
    "en": "Your balance is held by your other requests still running; try again in {seconds} s.",
}
REFUSAL_TEXT: dict[Language, dict[str, str]] = {
    "pt-BR": {
        "rpm": "Limite de solicitações por minuto do seu plano ({plan}: {limit}) atingido. "
        "Tente de novo em {seconds} s.",
        "tpm": "Limite de tokens por minuto do seu plano ({plan}: {limit}) atingido. "
        "Tente de novo em {seconds} s.",
        "too_large": "Esta solicitação sozinha precisa de {tokens} tokens, mais do que o limite "
        "de tokens por minuto do seu plano ({plan}: {limit}).",
        "model": "O modelo '{model}' não está disponível no seu plano ({plan}).",
        "unavailable": "O banco de dados do gateway está indisponível; tente de novo em instantes.",
        "stored_context": "Este gateway não aceita continuar uma conversa guardada no provedor "
        "('previous_response_id', 'conversation' ou 'item_reference'): envie o histórico "
        "completo em 'input'.",
    },
    "en": {
        "rpm": "Rate limit reached for requests per minute on your plan ({plan}: {limit}). "
        "Please try again in {seconds} s.",
        "tpm": "Rate limit reached for tokens per minute on your plan ({plan}: {limit}). "
        "Please try again in {seconds} s.",
        "too_large": "This request alone needs {tokens} tokens, more than the tokens per minute "
        "of your plan ({plan}: {limit}).",
        "model": "The model '{model}' is not available on your plan ({plan}).",
        "unavailable": "The gateway's database is unavailable; please try again shortly.",
        "stored_context": "This gateway does not continue a conversation stored by the provider "
        "('previous_response_id', 'conversation' or 'item_reference'): send the whole history "
        "in 'input'.",
    },
}


def refusal(language: Language, what: str, **words: object) -> str:
    """A refusal's message in the user's language; seconds read as the language writes them."""
    seconds = words.get("seconds")
    if isinstance(seconds, float):
        text = f"{seconds:.1f}"
        words["seconds"] = text.replace(".", ",") if language == "pt-BR" else text
    return REFUSAL_TEXT[language][what].format(**words)


BLOCKED_TEXT: dict[Language, str] = {
    "pt-BR": "Sua conta está bloqueada. Fale com o administrador para saber mais.",
    "en": "Your account is blocked. Contact your administrator to learn more.",
}


def user_blocked(language: Language) -> str:
    return BLOCKED_TEXT[language]


CHAT_NOTICE: dict[Language, dict[str, str]] = {
    "pt-BR": {
        "near": "⚠️ Você já usou {percent}% dos seus tokens deste período (restam {balance}).",
        "out": "⚠️ Seus tokens deste período acabaram.",
    },
    "en": {
        "near": "⚠️ You have used {percent}% of your tokens for this period ({balance} left).",
        "out": "⚠️ You have used all of your tokens for this period.",
    },
}


def chat_notice(language: Language, percent: int, balance: int) -> str:
    """The short line the gateway may append to the streamed reply that crossed a threshold."""
    template = CHAT_NOTICE[language]["out" if percent >= 100 else "near"]
    return template.format(percent=percent, balance=format_tokens(language, max(balance, 0)))
