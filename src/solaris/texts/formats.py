"""How numbers, money and dates read in each language. Dates and times are the operator's
(`SOLARIS_TIMEZONE`), in the pages and in sentences (e-mails, webhooks), with the zone's offset
wherever a time of day is shown."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, tzinfo
from decimal import Decimal
from zoneinfo import ZoneInfo

from babel.numbers import format_currency, get_currency_precision

from solaris.clock import as_utc
from solaris.texts import Language

__all__ = [
    "MONTHS",
    "format_clock",
    "format_date",
    "format_moment",
    "format_money",
    "format_month",
    "format_percent",
    "format_tokens",
    "format_usd",
    "moment_in_words",
]

MONTHS: dict[Language, tuple[str, ...]] = {
    "pt-BR": ("janeiro", "fevereiro", "março", "abril", "maio", "junho", "julho", "agosto",
              "setembro", "outubro", "novembro", "dezembro"),
    "en": ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December"),
}  # fmt: skip


def format_tokens(language: Language, value: int | float | None) -> str:
    if value is None:
        return "—"
    grouped = f"{round(value):,}"
    return grouped.replace(",", ".") if language == "pt-BR" else grouped


def format_percent(language: Language, fraction: float | None) -> str:
    if fraction is None:
        return "—"
    text = f"{100 * fraction:.1f}"
    return f"{text.replace('.', ',')} %" if language == "pt-BR" else f"{text}%"


def format_usd(language: Language, value: Decimal | float | None) -> str:
    """An estimated cost: cents, or four decimals below a dollar (one day of a small team)."""
    if value is None:
        return "—"
    text = f"{value:,.2f}" if value >= 1 else f"{value:.4f}"
    if language == "pt-BR":
        text = text.replace(",", "_").replace(".", ",").replace("_", ".")
    return f"US$ {text}"


def format_money(language: Language, cents: int, currency: str) -> str:
    """An amount in a currency's minor unit as that language writes it ("R$ 25,00", "R$25.00"),
    by CLDR's rules (Babel): the currency's own decimals, symbol and spacing."""
    locale = "pt_BR" if language == "pt-BR" else "en_US"
    amount = Decimal(cents).scaleb(-get_currency_precision(currency))
    return format_currency(amount, currency, locale=locale)


def format_date(language: Language, moment: datetime | date | None, zone: tzinfo = UTC) -> str:
    """The day of `moment` in `zone` (a `date` is already a day)."""
    if moment is None:
        return "—"
    if isinstance(moment, datetime):
        moment = as_utc(moment).astimezone(zone).date()
    if language == "pt-BR":
        return f"{moment:%d/%m/%Y}"
    return f"{MONTHS['en'][moment.month - 1][:3]} {moment.day}, {moment.year}"


def format_moment(language: Language, moment: datetime | None, zone: tzinfo = UTC) -> str:
    """A date and time in `zone`, with its offset: 02/12/2026 11:46 (UTC-03:00)."""
    if moment is None:
        return "—"
    local = as_utc(moment).astimezone(zone)
    return f"{format_date(language, local.date())} {format_clock(local)}"


def format_clock(moment: datetime) -> str:
    """The time of day of an aware moment, with its offset: 11:46 (UTC-03:00)."""
    return f"{moment:%H:%M} ({_offset(moment.utcoffset())})"


def format_month(language: Language, year: int, month: int) -> str:
    name = MONTHS[language][month - 1]
    return f"{name} de {year}" if language == "pt-BR" else f"{name} {year}"


def moment_in_words(language: Language, moment: datetime, timezone: str | None = None) -> str:
    """31/01/2026 às 07:00 (UTC-03:00) | January 31, 2026, 07:00 (UTC-03:00)."""
    local = moment.astimezone(ZoneInfo(timezone) if timezone else UTC)
    clock = format_clock(local)
    if language == "pt-BR":
        return f"{local:%d/%m/%Y} às {clock}"
    return f"{MONTHS['en'][local.month - 1]} {local.day}, {local.year}, {clock}"


def _offset(offset: timedelta | None) -> str:
    minutes = int((offset or timedelta()).total_seconds()) // 60
    if minutes == 0:
        return "UTC"
    sign = "+" if minutes > 0 else "-"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
