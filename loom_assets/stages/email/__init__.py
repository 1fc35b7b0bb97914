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

from loom_assets.stages.email.headers import (
    attachment_metadata,
    bare_id,
    body_text,
    header_charset_issues,
    headers_json,
    message_ids,
    parse_message,
)
from loom_assets.stages.email.messages import (
    MessagesResult,
    email_messages,
    embedding_items,
    embedding_text,
    loom_v2_row,
    message_row,
)
from loom_assets.stages.email.rows import (
    EMBEDDING_TEXT_CHARS,
    ERROR_DTYPES,
    HEADER_VALUE_CHARS,
    MESSAGE_DTYPES,
    RAW_COLUMNS,
    RULES_VERSION,
    BrokenMessage,
)
from loom_assets.stages.email.text import (
    clean_text,
    decode_text,
    html_to_text,
    split_quoted,
)
