"""The email flow's rules version, row layouts and the message parser."""

from email import policy
from email.errors import (
    MultipartInvariantViolationDefect,
    NoBoundaryInMultipartDefect,
    StartBoundaryNotFoundDefect,
)
from email.parser import BytesParser

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
