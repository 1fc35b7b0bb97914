"""Entities in the text: e-mail addresses, URLs, dates and phone numbers."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

# -- entities -------------------------------------------------------------------------------------
_MONTHS = {m: i + 1 for i, m in enumerate(
    ["january", "february", "march", "april", "may", "june", "july", "august", "september",
     "october", "november", "december"])}
_MONTHS.update({m[:3]: i for m, i in list(_MONTHS.items())})
_MONTHS["sept"] = 9
_MONTH = r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?"

_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,24}\b")
_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>\"'`]+", re.IGNORECASE)
_DATES = (
    # ISO 8601 date, optionally with a time: 2024-03-15, 2024-03-15T09:30
    ("iso", re.compile(r"\b(?P<y>\d{4})-(?P<m>\d{2})-(?P<d>\d{2})(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?\b")),
    # March 15, 2024 / Mar 15 2024 / March 15th, 2024
    ("mdy", re.compile(rf"\b(?P<mon>{_MONTH})\s+(?P<d>\d{{1,2}})(?:st|nd|rd|th)?,?\s+(?P<y>\d{{4}})\b", re.IGNORECASE)),
    # 15 March 2024 / 15th Mar 2024
    ("dmy", re.compile(rf"\b(?P<d>\d{{1,2}})(?:st|nd|rd|th)?\s+(?P<mon>{_MONTH}),?\s+(?P<y>\d{{4}})\b", re.IGNORECASE)),
    # 03/15/2024 (US month first; day first when the first number is > 12), 15.03.2024
    ("numeric", re.compile(r"\b(?P<a>\d{1,2})(?P<sep>[/.])(?P<b>\d{1,2})(?P=sep)(?P<y>\d{4}|\d{2})\b")),
)
# E.164 (+ and 8-15 digits, separators allowed) and US numbers: (415) 555-0132, 415-555-0132,
# 415.555.0132, +1 415 555 0132. A bare 10-digit run is not taken: on screens it is far more
# often an id or an amount than a phone number.
_PHONE = re.compile(
    r"(?<![\w+])(?:"
    r"\+\d{1,3}(?:[\s.-]?\(?\d{1,4}\)?){2,5}"
    r"|(?:1[\s.-])?\(\d{3}\)\s?\d{3}[\s.-]\d{4}"
    r"|(?:1[\s.-])?\d{3}[.-]\d{3}[.-]\d{4}"
    r")(?!\w)"
)
_TRAILING = ".,;:!?)]}'\""


def _date(match: re.Match, kind: str) -> str | None:
    """The matched date as YYYY-MM-DD, None when it is not a real date."""
    g = match.groupdict()
    try:
        if kind == "iso":
            y, m, d = int(g["y"]), int(g["m"]), int(g["d"])
        elif kind in ("mdy", "dmy"):
            y, m, d = int(g["y"]), _MONTHS[g["mon"].rstrip(".").lower()], int(g["d"])
        else:
            a, b, y = int(g["a"]), int(g["b"]), int(g["y"])
            y = y + 2000 if y < 100 else y
            if g["sep"] == "." or a > 12:
                d, m = a, b          # 15.03.2024 (European dots), 15/03/2024
            else:
                m, d = a, b          # 03/15/2024 (US)
        return date(y, m, d).isoformat()
    except (KeyError, ValueError):
        return None


def _phone(value: str) -> str | None:
    """E.164 form of a matched phone number, None when its digit count cannot be one."""
    digits = re.sub(r"\D", "", value)
    if value.startswith("+"):
        return f"+{digits}" if 8 <= len(digits) <= 15 else None
    if len(digits) == 11 and digits.startswith("1"):
        digits = digits[1:]
    return f"+1{digits}" if len(digits) == 10 else None


def entities(text: str) -> list[dict[str, Any]]:
    """URLs, emails, dates and phone numbers in `text`, by position: {type, value, start, end,
    normalized} with text[start:end] == value. Dates normalise to YYYY-MM-DD (ISO, "March 15,
    2024", "15 March 2024", 03/15/2024 US order, 15.03.2024), phones to E.164 (+1 for US
    numbers). A span already taken by an earlier type (email, url, date, phone, in that order)
    is not matched again."""
    found: list[dict[str, Any]] = []
    taken: list[tuple[int, int]] = []

    def add(kind: str, start: int, end: int, normalized: str | None) -> None:
        if any(start < e and s < end for s, e in taken):
            return
        taken.append((start, end))
        found.append({"type": kind, "value": text[start:end], "start": start, "end": end,
                      "normalized": normalized})

    for m in _EMAIL.finditer(text):
        add("email", m.start(), m.end(), m.group().lower())
    for m in _URL.finditer(text):
        value = m.group().rstrip(_TRAILING)
        if value.count("(") > value.count(")") and m.group()[len(value):].startswith(")"):
            value += ")"  # keep a balanced parenthesis (wikipedia-style URLs)
        normalized = value if "://" in value else f"http://{value}"
        add("url", m.start(), m.start() + len(value), normalized)
    for kind, pattern in _DATES:
        for m in pattern.finditer(text):
            iso = _date(m, kind)
            if iso is not None:
                add("date", m.start(), m.end(), iso)
    for m in _PHONE.finditer(text):
        value = m.group().rstrip(_TRAILING + " ")
        e164 = _phone(value)
        if e164 is not None:
            add("phone", m.start(), m.start() + len(value), e164)
    return sorted(found, key=lambda e: (e["start"], e["end"]))
