"""Pix codes as a payer's bank reads them: the BR Code (EMV QR "copia e cola") and its QR image.

The BR Code is built of ID-length-value fields as the Banco Central's manual lays out: payload
format, point of initiation, merchant account (GUI br.gov.bcb.pix and a random key), category,
currency 986, amount, country, merchant name and city, the transaction id, then a CRC-16/CCITT
over everything before it. The image is a PNG drawn by segno.
"""

from __future__ import annotations

import base64
import io
import uuid

import segno

__all__ = ["QR_BORDER", "QR_SCALE", "br_code", "crc16", "qr_png_base64"]

QR_SCALE = 5  # pixels per module
QR_BORDER = 4  # modules of quiet zone, as the QR standard asks


def _field(tag: str, value: str) -> str:
    assert len(tag) == 2 and len(value) <= 99, (tag, value)
    return f"{tag}{len(value):02d}{value}"


def crc16(payload: str) -> str:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF), four upper-case hex digits."""
    crc = 0xFFFF
    for byte in payload.encode():
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return f"{crc:04X}"


def br_code(amount_centavos: int, transaction_id: str, merchant: str = "SOLARIS DEV") -> str:
    """A dynamic-looking Pix copy-paste code for `amount_centavos`, paid to a random key."""
    assert amount_centavos > 0, amount_centavos
    account = _field("00", "br.gov.bcb.pix") + _field("01", str(uuid.uuid4()))
    payload = (
        _field("00", "01")
        + _field("01", "12")  # 12: a code for one payment
        + _field("26", account)
        + _field("52", "0000")
        + _field("53", "986")
        + _field("54", f"{amount_centavos // 100}.{amount_centavos % 100:02d}")
        + _field("58", "BR")
        + _field("59", merchant[:25])
        + _field("60", "SAO PAULO")
        + _field("62", _field("05", transaction_id[:25]))
        + "6304"
    )
    return payload + crc16(payload)


def qr_png_base64(text: str) -> str:
    """`text` as a QR code PNG (error correction M), base64 as Mercado Pago sends it."""
    out = io.BytesIO()
    segno.make_qr(text, error="m").save(out, kind="png", scale=QR_SCALE, border=QR_BORDER)
    return base64.b64encode(out.getvalue()).decode()
