"""Addresses, message ids, headers, attachments and the body part of a parsed message."""

import math
import re
from collections.abc import Iterable
from email.errors import InvalidBase64LengthDefect
from email.message import EmailMessage
from email.utils import getaddresses, parsedate_to_datetime
from typing import Any

import pandas as pd

from loom_assets.stages.email.rows import (
    _BROKEN_STRUCTURE,
    _PARSER,
    HEADER_VALUE_CHARS,
    BrokenMessage,
)
from loom_assets.stages.email.text import clean_text, decode_text, html_to_text


# -- addresses, ids, headers ----------------------------------------------------------------------
def bare_id(value: Any) -> str | None:
    """A Message-ID without its angle brackets and whitespace."""
    if not isinstance(value, str):
        return None
    found = re.findall(r"<([^<>\s]+)>", value)
    text = found[0] if found else value.strip()
    return text or None


def message_ids(value: Any) -> list[str]:
    """Every id in a References/In-Reply-To header, in order."""
    if not isinstance(value, str):
        return []
    return re.findall(r"<([^<>\s]+)>", value) or value.split()


def _addresses(values: Iterable[str]) -> list[dict[str, str]]:
    return [{"name": clean_text(name), "address": clean_text(address).lower()}
            for name, address in getaddresses([clean_text(v) for v in values]) if address]


def _header_values(message: EmailMessage, name: str) -> list[str]:
    """A header's values as text; a header the policy cannot parse is read as its raw text."""
    out = []
    raw = _raw_header_values(message, name, decode=False)
    for i, value in enumerate(message.get_all(name, []) or []):
        as_sent = raw[i] if i < len(raw) else ""
        if _has_raw_bytes(as_sent):  # 8-bit bytes in a header (no RFC 2047): decode them ourselves
            out.append(" ".join(clean_text(as_sent).split()))
            continue
        try:
            out.append(clean_text(str(value)))
        except (ValueError, TypeError, IndexError):  # the stdlib's header parser fails on odd values
            out.append(clean_text(as_sent))
    return out


def _has_raw_bytes(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def header_charset_issues(message: EmailMessage) -> list[str]:
    """Headers with 8-bit bytes that are not UTF-8 (read as Windows-1252), or with encoded words
    the stdlib could not decode."""
    issues = []
    for name in ("subject", "from", "to", "cc"):
        for value in _raw_header_values(message, name, decode=False):
            if _has_raw_bytes(value):
                try:
                    value.encode("utf-8", "surrogateescape").decode("utf-8")
                except UnicodeDecodeError:
                    issues.append(f"header_charset:{name}")
                    break
            elif "\ufffd" in " ".join(_header_values(message, name)):
                issues.append(f"header_charset:{name}")
                break
    return issues


def _raw_header_values(message: EmailMessage, name: str, decode: bool = True) -> list[str]:
    """The header's values as the bytes said them (before RFC 2047 decoding); 8-bit bytes
    decoded by `clean_text` unless `decode` is False (then they stay surrogate escapes)."""
    values = [v for k, v in message.raw_items() if k.lower() == name.lower()]
    return [clean_text(v) for v in values] if decode else values


def _first(message: EmailMessage, name: str) -> str | None:
    values = _header_values(message, name)
    return values[0] if values else None


def headers_json(message: EmailMessage) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, _ in message.raw_items():
        key = name.lower()
        if key in out:
            continue
        values = [v[:HEADER_VALUE_CHARS] for v in _header_values(message, name)]
        out[key] = values[0] if len(values) == 1 else values
    return out


def attachment_metadata(message: EmailMessage) -> list[dict[str, Any]]:
    """{filename, content_type, size} of each attachment (a part that is not the text or HTML
    body: Content-Disposition attachment, or inline with a filename, or a non-text leaf). `size`
    is the decoded size; a part the fetcher emptied keeps the size it had (X-Loom-Removed-Bytes)."""
    found = []
    for part in message.walk():
        if part.is_multipart():
            continue
        disposition = part.get_content_disposition()
        filename = part.get_filename()
        text_body = part.get_content_maintype() == "text" and disposition != "attachment" and not filename
        if text_body or part.get_content_type() == "message/delivery-status":
            continue
        removed = part.get("X-Loom-Removed-Bytes")
        payload = part.get_payload(decode=True) or b""
        found.append({
            "filename": clean_text(filename) if filename else None,
            "content_type": part.get_content_type(),
            "size": int(removed) if removed and str(removed).isdigit() else len(payload),
        })
    return found


def parse_message(raw: bytes) -> EmailMessage:
    return _PARSER.parsebytes(raw)


def _body_part(message: EmailMessage):
    return message.get_body(preferencelist=("plain",)) or message.get_body(preferencelist=("html",))


def body_text(message: EmailMessage) -> tuple[str, str, list[str]]:
    """(text, source plain|html|none, charset issues) of the message's body: the text/plain
    part, else the HTML part sanitised to text. Raises BrokenMessage (see the module doc)."""
    for part in message.walk():
        broken = [d for d in part.defects if isinstance(d, _BROKEN_STRUCTURE)]
        if broken:
            raise BrokenMessage("broken_mime", f"{part.get_content_type()}: "
                                + ", ".join(type(d).__name__ for d in broken))
    part = _body_part(message)
    if part is None:
        return "", "none", []
    payload = part.get_payload(decode=True) or b""
    issues = []
    if any(isinstance(d, InvalidBase64LengthDefect) for d in part.defects):
        raise BrokenMessage("undecodable_base64", f"{part.get_content_type()} part: base64 of an impossible length")
    if part.defects:  # recoverable transfer-encoding defects, already worked around by the stdlib
        issues += sorted({f"transfer_encoding:{type(d).__name__}" for d in part.defects})
    text, charset_issues = decode_text(payload, part.get_content_charset())
    issues += charset_issues
    text = text.replace("\x00", "")
    if part.get_content_subtype() == "html":
        return html_to_text(text), "html", issues
    return text.replace("\r\n", "\n").strip(), "plain", issues


def _sent_at(value: str | None) -> pd.Timestamp | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed is None:
        return None
    stamp = pd.Timestamp(parsed)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return value is pd.NA or value is pd.NaT


def _value(record: dict, name: str) -> Any:
    value = record.get(name)
    return None if _missing(value) else value
