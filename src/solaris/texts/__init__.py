"""Every word a user or an operator reads, in pt-BR and English, and how values read in each.

- `formats`: numbers, money and dates as each language writes them.
- `chat`: what the gateway says in the chat (blocks, refusals, the threshold notice).
- `alerts`: e-mails, webhook sentences and system alerts.
- `pages`: the dashboard's and the portal's catalog.

A language is one of `LANGUAGES`; `language_of` reads one from a loose value (a header, a
setting), defaulting to English for anything that is not Portuguese.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["LANGUAGES", "Language", "language_of"]

Language = Literal["pt-BR", "en"]
LANGUAGES: tuple[Language, ...] = ("pt-BR", "en")


def language_of(value: str | None) -> Language:
    return "pt-BR" if (value or "").lower().startswith("pt") else "en"
