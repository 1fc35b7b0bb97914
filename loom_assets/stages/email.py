"""Email: raw messages -> parsed messages (docs/flows/email.md#messages) and the text they are
searched by (S3 text_embedding).

A raw row holds either a whole RFC 822 message (Loom's email fetcher: `raw_message`, the exact
bytes) or the fields Loom v2's email fetcher extracted (docs/messages.md#fetcher-envelopes: subject,
sender, receiver, body, …, no raw bytes); `email_messages` turns both into one row shape.

What counts as broken (an error row, the original kept) rather than merely messy (decoded,
flagged in `charset_issues`), from what the stdlib `email` package reports:
- `broken_mime`: a multipart whose parts cannot be found: `NoBoundaryInMultipartDefect` (no
  boundary parameter), `StartBoundaryNotFoundDefect` (the boundary never appears) or
  `MultipartInvariantViolationDefect` (the parser had to give up on the structure).
- `undecodable_base64`: the body part's base64 has `InvalidBase64LengthDefect` (a length no
  base64 can have; the stdlib then hands back the undecoded text). Stray characters or missing
  padding (`InvalidBase64CharactersDefect`, `…PaddingDefect`) are skipped by the stdlib and
  only flagged.
- `unknown_charset`: the body part names a charset Python does not know and its bytes are not
  UTF-8 either, so no decoding can be trusted.
Messy but kept: a known charset whose bytes do not fit it (a latin-1 message labelled UTF-8) is
decoded as UTF-8, else Windows-1252 (a superset of latin-1 for text), else with replacement
characters, and flagged; an unknown charset over UTF-8 bytes is read as UTF-8 and flagged.
"""

import base64
import codecs
import hashlib
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from email import policy
from email.errors import (
    InvalidBase64LengthDefect,
    MultipartInvariantViolationDefect,
    NoBoundaryInMultipartDefect,
    StartBoundaryNotFoundDefect,
)
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses, parseaddr, parsedate_to_datetime
from typing import Any

import lxml.html
import pandas as pd
from lxml import etree
from lxml_html_clean import Cleaner

from loom_assets.stages.frames import typed_frame, utc, with_columns

RULES_VERSION = "1"  # bump when parsing, quote splitting or the embedded text changes

# docs/flows/email.md#embeddings embeds "From", "Subject" and the body; all-MiniLM-L6-v2 reads 256 word pieces
# (~1000-1500 characters of English), so 2000 characters is all it can use, with margin.
EMBEDDING_TEXT_CHARS = 2000
# Header values kept in `headers` are cut here: a few headers (DKIM, ARC) run to kilobytes and
# are of no use for search or display.
HEADER_VALUE_CHARS = 2000

RAW_COLUMNS = (
    "window_start", "device_id", "recorded_at", "source_topic", "source_partition", "source_offset",
    "message_id", "raw_message", "account", "account_name", "folder", "uid", "flags", "size",
    "gmail_thread_id", "attachments",
    # Loom v2's email fetcher (docs/messages.md#fetcher-envelopes)
    "email_id", "content_hash", "header_message_id", "subject", "sender", "receiver", "body", "seen",
)

_TIME = "datetime64[us, UTC]"
_HEAD: dict[str, str] = {
    "window_start": _TIME,
    "device_id": "str",
    "recorded_at": _TIME,           # INTERNALDATE (when the server got it), Loom v2: date_received
    "source_topic": "str",
    "source_partition": "Int64",
    "source_offset": "Int64",
}
MESSAGE_DTYPES: dict[str, str] = {
    **_HEAD,
    "message_id": "str",            # Message-ID without <>; a content hash when the message has none
    "thread_id": "str",             # Gmail's X-GM-THRID, else the References root, else message_id
    "account": "str",               # the mailbox's address
    "folder": "str",                # INBOX, Sent (the server's name for it)
    "uid": "Int64",                 # IMAP UID within the folder's UIDVALIDITY
    "from_name": "str",
    "from_address": "str",
    "to_addresses": "object",       # jsonb [{name, address}]
    "cc_addresses": "object",       # jsonb [{name, address}]
    "subject": "str",
    "sent_at": _TIME,               # the Date header; NULL when missing or unreadable
    "in_reply_to": "str",
    "references": "object",         # jsonb [message ids], oldest first
    "body_text": "str",             # the new text of the message, quoted replies removed
    "quoted_text": "str",           # the quoted replies, NULL when none
    "body_source": "str",           # plain | html | none | loom_v2
    "attachments": "object",        # jsonb [{filename, content_type, size}]
    "headers": "object",            # jsonb {lower-case name: value, or [values] when repeated}
    "flags": "object",              # jsonb IMAP flags
    "seen": "boolean",
    "size_bytes": "Int64",
    "charset_issues": "object",     # jsonb [str], NULL when clean
}
ERROR_DTYPES: dict[str, str] = {
    **_HEAD,
    "error_type": "str",            # broken_mime | undecodable_base64 | unknown_charset
    "error_message": "str",
    "original": "object",           # the message's bytes, for processing_errors.original_value
}

_PARSER = BytesParser(policy=policy.default)
_BROKEN_STRUCTURE = (NoBoundaryInMultipartDefect, StartBoundaryNotFoundDefect, MultipartInvariantViolationDefect)


class BrokenMessage(ValueError):
    """A message that cannot be read faithfully; `error_type` is a stable short code."""

    def __init__(self, error_type: str, message: str):
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.message = message


# -- text decoding ----------------------------------------------------------------------------
def clean_text(text: str) -> str:
    """Text PostgreSQL accepts: bytes the parser kept as surrogate escapes are decoded (UTF-8,
    else Windows-1252), NULs dropped."""
    if any("\udc80" <= ch <= "\udcff" for ch in text):
        raw = text.encode("utf-8", "surrogateescape")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("cp1252", "replace")
    return text.replace("\x00", "")


def decode_text(payload: bytes, declared: str | None) -> tuple[str, list[str]]:
    """`payload` as text and what was wrong with its charset (empty when nothing). Raises
    BrokenMessage for an unknown charset over bytes that are not UTF-8."""
    charset = (declared or "us-ascii").strip().strip('"').lower()
    try:
        codec = codecs.lookup(charset).name
    except LookupError:
        try:
            return payload.decode("utf-8"), [f"unknown_charset:{charset}"]
        except UnicodeDecodeError:
            raise BrokenMessage("unknown_charset", f"charset {charset!r} is unknown and the text is not UTF-8") from None
    try:
        return payload.decode(codec), []
    except UnicodeDecodeError:
        pass
    for fallback in ("utf-8", "cp1252"):
        if fallback != codec:
            try:
                return payload.decode(fallback), [f"charset_mismatch:{charset}->{fallback}"]
            except UnicodeDecodeError:
                continue
    return payload.decode(codec, "replace"), [f"charset_replaced:{charset}"]


# -- HTML -------------------------------------------------------------------------------------
_CLEANER = Cleaner(scripts=True, javascript=True, style=True, comments=True, embedded=True, forms=False,
                   kill_tags=["head", "title"], page_structure=False, safe_attrs_only=False)
# Paragraph-like elements are set apart by a blank line, line-like ones by a line break (Gmail
# writes one <div> per line). Marks first, newlines at the end: adjacent elements share breaks.
_PARAGRAPHS = {"p", "ul", "ol", "table", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "hr", "section",
               "article", "header", "footer", "address"}
_LINES = {"div", "li", "tr", "dd", "dt"}
_LINE, _PARAGRAPH = "\x01", "\x02"


def _html_lines(element) -> str:
    parts = [element.text or ""]
    for child in element:
        if not isinstance(child.tag, str):  # processing instructions and the like
            parts.append(child.tail or "")
            continue
        inner = _html_lines(child)
        tag = child.tag.lower()
        if tag == "blockquote":  # quoted replies in HTML mail: quote them as text mail does
            lines = _breaks(inner).strip("\n").splitlines()
            inner = _LINE + "\n".join(f"> {line}" for line in lines) + _LINE
        elif tag == "br":
            inner = "\n"
        elif tag in _PARAGRAPHS:
            inner = f"{_PARAGRAPH}{inner}{_PARAGRAPH}"
        elif tag in _LINES:
            inner = f"{_LINE}{inner}{_LINE}"
        elif tag == "td":
            inner = f"{inner} "
        parts += [inner, child.tail or ""]
    return "".join(parts)


def _breaks(text: str) -> str:
    """Runs of break marks (and the whitespace between them) as one line break, or a blank
    line when one of them is a paragraph's."""
    return re.sub(r"[\x01\x02][\x01\x02\s]*",
                  lambda m: "\n\n" if _PARAGRAPH in m.group() else "\n", text)


def html_to_text(html: str) -> str:
    """Readable text of an HTML body: scripts, styles and comments removed (lxml_html_clean),
    block elements on their own lines, blockquotes as "> " lines."""
    if not html.strip():
        return ""
    try:
        document = lxml.html.document_fromstring(html)
    except (etree.ParserError, ValueError):
        return ""
    _CLEANER(document)
    text = _breaks(_html_lines(document))
    lines = [re.sub(r"[ \t\u00a0]+", " ", line).strip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


# -- quoted replies -----------------------------------------------------------------------------
# "On Tue, 3 Mar 2026 at 10:00, Ann <ann@x.org> wrote:" (Gmail, Apple Mail, Thunderbird), often
# wrapped over two lines; the same in French, German and Spanish.
_ATTRIBUTION = re.compile(
    r"^(?:On\s.{1,300}?\swrote|Le\s.{1,300}?\sa\s+écrit|Am\s.{1,300}?\sschrieb|El\s.{1,300}?\sescribió)\s*:\s*$",
    re.IGNORECASE | re.DOTALL,
)
# Outlook: "-----Original Message-----", or a rule of underscores followed by a From: header block.
_OUTLOOK = re.compile(r"^\s*-{2,}\s*(?:Original Message|Ursprüngliche Nachricht|Message d'origine)\s*-{2,}\s*$",
                      re.IGNORECASE)
_RULE = re.compile(r"^\s*_{10,}\s*$")
_HEADER_LINE = re.compile(r"^\s*\*?(?:From|De|Von)\s*:\*?\s", re.IGNORECASE)


def _quote_start(lines: Sequence[str]) -> int | None:
    """Index of the first line of a quoted-reply block (an attribution or an Outlook header)."""
    for i, line in enumerate(lines):
        if _OUTLOOK.match(line):
            return i
        if _RULE.match(line) and any(_HEADER_LINE.match(l) for l in lines[i + 1:i + 3]):
            return i
        for span in (1, 2, 3):  # attributions wrap over up to three lines
            joined = " ".join(l.strip() for l in lines[i:i + span])
            if joined and _ATTRIBUTION.match(joined):
                return i
    return None


def split_quoted(text: str) -> tuple[str, str | None]:
    """(new text, quoted replies or None). Everything from the first attribution ("On … wrote:")
    or Outlook header block ("-----Original Message-----") on is quoted; above it, lines starting
    with ">" are quoted too, so inline replies between quotes stay new text."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    start = _quote_start(lines)
    head, tail = (lines, []) if start is None else (lines[:start], lines[start:])
    new = [l for l in head if not l.lstrip().startswith(">")]
    quoted = [l for l in head if l.lstrip().startswith(">")] + tail
    new_text = re.sub(r"\n{3,}", "\n\n", "\n".join(new)).strip()
    quoted_text = "\n".join(quoted).strip()
    return new_text, quoted_text or None


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
