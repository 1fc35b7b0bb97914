"""The email stage: raw messages of one window into message rows, and their embedding text."""

import base64
import hashlib
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Any

import pandas as pd

from loom_assets.stages.email.headers import (
    _addresses,
    _first,
    _header_values,
    _missing,
    _raw_header_values,
    _sent_at,
    _value,
    attachment_metadata,
    bare_id,
    body_text,
    header_charset_issues,
    headers_json,
    message_ids,
    parse_message,
)
from loom_assets.stages.email.rows import (
    _HEAD,
    EMBEDDING_TEXT_CHARS,
    ERROR_DTYPES,
    MESSAGE_DTYPES,
    RAW_COLUMNS,
    BrokenMessage,
)
from loom_assets.stages.email.text import clean_text, split_quoted
from loom_assets.stages.frames import typed_frame, utc, with_columns


# -- one message ------------------------------------------------------------------------------
def message_row(raw: bytes, record: dict) -> dict[str, Any]:
    """The parsed columns of one RFC 822 message (raw row `record` for account, folder, flags).
    Raises BrokenMessage."""
    message = parse_message(raw)
    text, source, issues = body_text(message)
    issues += header_charset_issues(message)
    new_text, quoted = split_quoted(text)
    message_id = bare_id(_first(message, "message-id")) or f"sha256:{hashlib.sha256(raw).hexdigest()}"
    references = [clean_text(i) for i in message_ids(" ".join(_raw_header_values(message, "references")))]
    in_reply_to = next(iter(message_ids(" ".join(_raw_header_values(message, "in-reply-to")))), None)
    gmail_thread = _value(record, "gmail_thread_id")
    thread_id = (f"gmail:{gmail_thread}" if gmail_thread else None) or (references[0] if references else None) \
        or in_reply_to or message_id
    senders = _addresses(_header_values(message, "from"))
    flags = list(_value(record, "flags") or [])
    attachments = _value(record, "attachments")
    return {
        "message_id": message_id,
        "thread_id": thread_id,
        "from_name": senders[0]["name"] or None if senders else None,
        "from_address": senders[0]["address"] if senders else None,
        "to_addresses": _addresses(_header_values(message, "to")),
        "cc_addresses": _addresses(_header_values(message, "cc")),
        "subject": _first(message, "subject"),
        "sent_at": _sent_at(_first(message, "date")),
        "in_reply_to": in_reply_to,
        "references": references,
        "body_text": new_text,
        "quoted_text": quoted,
        "body_source": source,
        "attachments": list(attachments) if attachments is not None else attachment_metadata(message),
        "headers": headers_json(message),
        "flags": flags,
        "seen": "\\Seen" in flags,
        "size_bytes": _value(record, "size") or len(raw),
        "charset_issues": issues or None,
    }


def loom_v2_row(record: dict) -> dict[str, Any]:
    """The parsed columns of a Loom v2 email-fetcher record (docs/messages.md#fetcher-envelopes): no
    raw message, its fields are taken as they are (Loom v2 fetched INBOX only and kept text/plain
    bodies)."""
    name, address = parseaddr(clean_text(_value(record, "sender") or ""))
    new_text, quoted = split_quoted(clean_text(_value(record, "body") or ""))
    message_id = (bare_id(_value(record, "header_message_id")) or _value(record, "email_id")
                  or _value(record, "content_hash") or record.get("message_id"))
    seen = _value(record, "seen")
    return {
        "message_id": message_id,
        "thread_id": message_id,
        "from_name": name or None,
        "from_address": address.lower() or None,
        "to_addresses": _addresses([_value(record, "receiver") or ""]),
        "cc_addresses": [],
        "subject": clean_text(_value(record, "subject") or "") or None,
        "sent_at": None,
        "in_reply_to": None,
        "references": [],
        "body_text": new_text,
        "quoted_text": quoted,
        "body_source": "loom_v2",
        "attachments": [],
        "headers": {},
        "flags": ["\\Seen"] if seen else [],
        "seen": bool(seen) if seen is not None else None,
        "size_bytes": None,
        "charset_issues": None,
    }


# -- the stage --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MessagesResult:
    rows: pd.DataFrame      # MESSAGE_DTYPES
    errors: pd.DataFrame    # ERROR_DTYPES


def _raw_bytes(value: Any) -> bytes | None:
    if _missing(value):
        return None
    if isinstance(value, str):  # base64 text, if a caller passes the wire form
        return base64.b64decode(value)
    return bytes(value)


def email_messages(raw: pd.DataFrame | None) -> MessagesResult:
    """One window of raw email rows (`RAW_COLUMNS`) -> one row per (message_id, folder) and
    error rows for broken messages.

    The same message can arrive twice in a window (a resync after the server changed its
    UIDVALIDITY while the fetcher's cursor was lost, Loom v2 and Loom both fetching): the first
    by event time, then Kafka position, is kept. Its copies in other folders (a message to
    yourself: INBOX and Sent) are rows of their own, since the folder is part of what a
    message is to you. Across windows the fetcher's cursor keeps a message from being
    published twice.
    """
    frame = with_columns(raw, RAW_COLUMNS)
    if len(frame):
        frame = frame.assign(recorded_at=utc(frame["recorded_at"]))
        frame = frame.sort_values(["recorded_at", "source_partition", "source_offset"], kind="stable")
    rows, errors = [], []
    for record in frame.to_dict("records"):
        head = {c: record.get(c) for c in _HEAD}
        # Loom v2's fetcher read INBOX only and says no folder; a message without one counts as INBOX.
        context = {"account": _value(record, "account"), "folder": _value(record, "folder") or "INBOX",
                   "uid": _value(record, "uid")}
        data = _raw_bytes(record.get("raw_message"))
        if data is None:
            rows.append({**head, **context, **loom_v2_row(record)})
            continue
        try:
            parsed = message_row(data, record)
        except BrokenMessage as error:
            errors.append({**head, "error_type": error.error_type, "error_message": error.message,
                           "original": data})
            continue
        rows.append({**head, **context, **parsed})
    messages = typed_frame(rows, MESSAGE_DTYPES)
    if len(messages):
        messages = messages.drop_duplicates(["message_id", "folder"], keep="first").reset_index(drop=True)
    return MessagesResult(messages, typed_frame(errors, ERROR_DTYPES))


# -- embeddings -------------------------------------------------------------------------------------
def embedding_items(messages: pd.DataFrame) -> pd.DataFrame:
    """One item per message: its copies in INBOX and Sent are one text to search."""
    if messages.empty:
        return messages
    return messages.drop_duplicates("message_id", keep="first").reset_index(drop=True)


def embedding_text(messages: pd.DataFrame) -> pd.Series:
    """docs/flows/email.md#embeddings: "From: <sender>", "Subject: <subject>", then the body, newline-
    joined (the new text only: quoted replies belong to the messages they quote), at most
    EMBEDDING_TEXT_CHARS characters."""
    def one(row) -> str:
        name, address = row.get("from_name"), row.get("from_address")
        sender = f"{name} <{address}>" if not _missing(name) and name and not _missing(address) else (
            address if not _missing(address) else "")
        subject = row.get("subject")
        body = row.get("body_text")
        text = "\n".join([f"From: {sender}", f"Subject: {'' if _missing(subject) else subject}",
                          "" if _missing(body) else body])
        return text[:EMBEDDING_TEXT_CHARS]

    if messages.empty:
        return pd.Series([], dtype="object")
    return pd.Series([one(r) for r in messages.to_dict("records")], index=messages.index, dtype="object")
