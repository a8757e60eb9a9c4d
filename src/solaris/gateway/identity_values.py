"""Identity values (user id, e-mail, conversation id), checked once before anything uses them.

A LibreChat user id becomes a database key, a line in `solaris users list`, a CSV cell and a log
field; an e-mail becomes a recipient. So each must be text a person can read: Unicode without
control or format characters (general categories Cc, Cf, Cs, Zl, Zp), NFC-normalised so one
name is one key, of bounded length. Raw header bytes are read as UTF-8 when they are valid UTF-8
(a client sending raw UTF-8 means it; Latin-1 would store mojibake), else as Latin-1 (what HTTP
says; C1 controls then get refused). LibreChat sends values beyond Latin-1 as
`b64:<base64 of UTF-8>`: decoded first, then checked the same way. Anything else is refused with
a 400 that names the header (or the body field), before it reaches the database: a NUL would
make PostgreSQL fail the request as if the database were down.

Cheap by construction: ASCII (every LibreChat id) is checked by one `str.isprintable()`.
"""

from __future__ import annotations

import base64
import binascii
import unicodedata

from solaris.errors import BadRequest

__all__ = ["B64_PREFIX", "REFUSED_CATEGORIES", "clean_text", "email_address", "header_text"]

B64_PREFIX = "b64:"
REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
# A character is at most 4 bytes of UTF-8 and base64 grows by 4/3: a longer raw value cannot
# decode to a value short enough, and is refused before any decoding work.
RAW_BYTES_PER_CHARACTER_MAX = 6


def header_text(raw: bytes, header: str, length_max: int) -> str:
    """The header's value as checked text ("" when empty); raises `BadRequest` naming it."""
    if len(raw) > RAW_BYTES_PER_CHARACTER_MAX * length_max + len(B64_PREFIX):
        raise _too_long(f"header {header}", header, length_max)
    try:
        value = raw.decode("utf-8")
    except UnicodeDecodeError:
        value = raw.decode("latin-1")
    value = value.strip(" ")
    if value.startswith(B64_PREFIX):
        try:
            value = base64.b64decode(value[len(B64_PREFIX) :], validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise BadRequest(
                f"Invalid header {header}: the b64: value is not base64 of UTF-8 text.",
                param=header,
            ) from None
        value = value.strip(" ")
    return clean_text(value, f"header {header}", header, length_max)


def clean_text(value: str, what: str, param: str, length_max: int) -> str:
    """`value` NFC-normalised if it is readable text of at most `length_max` characters;
    else `BadRequest` saying `what` is wrong (e.g. "header X-…" or "`user` field")."""
    if len(value) > RAW_BYTES_PER_CHARACTER_MAX * length_max:  # no work on a huge value
        raise _too_long(what, param, length_max)
    if value.isascii():  # the common case: only C0 controls and DEL are not printable
        if not value.isprintable():
            raise _refused(what, param, next(c for c in value if not c.isprintable()))
    else:
        value = unicodedata.normalize("NFC", value)
        for character in value:
            if unicodedata.category(character) in REFUSED_CATEGORIES:
                raise _refused(what, param, character)
    if len(value) > length_max:
        raise _too_long(what, param, length_max)
    return value


def email_address(value: str) -> str | None:
    """`value` (already checked text) if it has the shape of an address, else None: mail to it
    could not be delivered, and refusing the user's chat for a directory quirk would be worse."""
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain or any(c.isspace() for c in value):
        return None
    return value


def _refused(what: str, param: str, character: str) -> BadRequest:
    return BadRequest(
        f"Invalid {what}: control and format characters are not allowed "
        f"(found U+{ord(character):04X}).",
        param=param,
    )


def _too_long(what: str, param: str, length_max: int) -> BadRequest:
    return BadRequest(f"Invalid {what}: longer than {length_max} characters.", param=param)
