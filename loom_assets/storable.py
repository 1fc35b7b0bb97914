"""What PostgreSQL can store: the limits every raw record is checked against while decoding.

One record PostgreSQL refuses (a NUL in text, an integer past its column, JSON too deep to
write, an id too long for its index) would fail its whole window's COPY. `events`
checks each record once against these limits, for every topic, so such a record becomes its
own error row. Functions here return `(error_type, message)` or None; `events` raises.
"""

import math
from datetime import UTC, datetime
from functools import lru_cache
from typing import Annotated, Any, NamedTuple, get_args

from pydantic import BaseModel

BIGINT = (-(2**63), 2**63 - 1)
INTEGER = (-(2**31), 2**31 - 1)
# Ids are indexed (`(device_id, time)` on every raw table) and a btree entry holds ~2.7 kB at
# most; 256 is far above any real device, message or event id.
MAX_ID_LENGTH = 256
# jsonb is written through Python's json module, which recurses per level; 64 levels is far
# beyond any payload's metadata and far below the interpreter's recursion limit.
MAX_JSON_DEPTH = 64
# Event times outside this range are clock or unit errors (milliseconds read as seconds …),
# and pandas' nanosecond timestamps end in 2262.
EARLIEST_TIME = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_TIME = datetime(2200, 1, 1, tzinfo=UTC)

Problem = tuple[str, str]  # (error_type, message)


class Stored(NamedTuple):
    """How a field is stored, where plain `int`/`str` would say too little: an `integer` (not
    `bigint`) column, or an indexed id. Used as `Annotated` metadata on payload fields."""

    integer_range: tuple[int, int] = BIGINT
    max_length: int | None = None


PLAIN = Stored()
ID = Stored(max_length=MAX_ID_LENGTH)
# An `int` field whose column is `integer` in sql/ (a plain `int` field is `bigint`).
Int32 = Annotated[int, Stored(integer_range=INTEGER)]
# A text field that is an indexed id, length-limited like the envelope's ids.
IdText = Annotated[str, ID]


def problem(where: str, value: Any, stored: Stored = PLAIN, depth: int = 0) -> Problem | None:
    """What keeps PostgreSQL from storing `value` (a field, or JSON inside one), if anything:
    NUL in text or keys, an integer past the column's range, JSON nested past MAX_JSON_DEPTH,
    an id past MAX_ID_LENGTH, a time outside EARLIEST_TIME … LATEST_TIME."""
    if isinstance(value, str):
        if "\x00" in value:
            return "invalid_text", f"{where}: text holds a NUL character, which PostgreSQL cannot store"
        if stored.max_length is not None and len(value) > stored.max_length:
            return "id_too_long", f"{where}: {len(value)} characters, more than {stored.max_length}"
    elif isinstance(value, bool) or value is None:
        return None
    elif isinstance(value, int):
        low, high = stored.integer_range
        if not low <= value <= high:
            return "integer_out_of_range", f"{where}: {_digits(value)} is outside [{low}, {high}]"
    elif isinstance(value, float):
        if depth and not math.isfinite(value):  # a float column holds NaN and ±Infinity; jsonb does not
            return "invalid_number", f"{where}: {value} cannot be stored in JSON"
    elif isinstance(value, datetime):
        return time_problem(value, where)
    elif isinstance(value, dict | list):
        if depth >= MAX_JSON_DEPTH:
            return "too_deeply_nested", f"{where}: JSON nested deeper than {MAX_JSON_DEPTH} levels"
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            found = (isinstance(key, str) and problem(f"{where} key", key, PLAIN, depth + 1)) or \
                problem(where, item, PLAIN, depth + 1)
            if found:
                return found
    return None


def time_problem(value: datetime, what: str) -> Problem | None:
    """A time outside EARLIEST_TIME … LATEST_TIME (naive is UTC) is `timestamp_out_of_range`."""
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if EARLIEST_TIME <= aware < LATEST_TIME:
        return None
    return ("timestamp_out_of_range",
            f"{what} {value.isoformat()} is outside {EARLIEST_TIME:%Y-%m-%d} … {LATEST_TIME:%Y-%m-%d}")


def payload_problem(payload: BaseModel) -> Problem | None:
    """The first field of a validated payload that PostgreSQL could not store, if any."""
    stored = stored_fields(type(payload))
    for name, value in payload.__dict__.items():
        if found := problem(name, value, stored.get(name, PLAIN)):
            return found
    return None


@lru_cache(maxsize=64)
def stored_fields(model: type[BaseModel]) -> dict[str, Stored]:
    """The fields of `model` whose annotation carries `Stored` (Int32, IdText), at any depth."""

    def find(annotation: Any) -> Stored | None:
        for meta in getattr(annotation, "__metadata__", ()):
            if isinstance(meta, Stored):
                return meta
        for arg in get_args(annotation):
            if (found := find(arg)) is not None:
                return found
        return None

    stored = {}
    for name, field in model.model_fields.items():
        found = next((m for m in field.metadata if isinstance(m, Stored)), None) or find(field.annotation)
        if found is not None:
            stored[name] = found
    return stored


def _digits(value: int) -> str:
    # str() of an int past 4,300 digits raises; the bit length says enough.
    return str(value) if value.bit_length() < 256 else f"an integer of {value.bit_length()} bits"
