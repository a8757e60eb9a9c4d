"""Cells of the CSV files the product writes, safe to open in a spreadsheet.

A spreadsheet runs a cell that begins with `=`, `+`, `-` or `@` (or a tab or carriage return
before one) as a formula: a model name a client sent, `=HYPERLINK("http://evil/","x")`, would
become a link or a command in the operator's or the user's sheet. OWASP's rule for CSV injection
is to prefix such text with an apostrophe, which spreadsheets show as text and do not print.
Numbers are written as numbers, negative ones included: they are ours, never a client's text.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

__all__ = ["FORMULA_STARTS", "Cell", "safe_cell", "safe_row"]

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
Cell = str | int | datetime | None


def safe_cell(value: Cell) -> str | int:
    """The cell as written: None is empty, a datetime ISO 8601, text neutralised."""
    if value is None:
        return ""
    if isinstance(value, bool):  # a bool is an int to Python, not a number to a reader
        return "yes" if value else "no"
    if isinstance(value, int):
        return value
    text = value.isoformat() if isinstance(value, datetime) else value
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def safe_row(values: Iterable[Cell]) -> list[str | int]:
    return [safe_cell(value) for value in values]
