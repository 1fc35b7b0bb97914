"""Secrets out of text Loom writes but did not author: an exception's message, a log line.

Every URL in the text keeps its scheme, host, port and path; its user info (`user:password@`)
is dropped and its query and fragment become `?…` (`#…`), where tokens travel. A path alone
(urllib3 names only the path: "Max retries exceeded with url: /a?token=…") loses its query
and fragment too. The keys private calendar addresses carry in their path become `…`: Google's
`/private-<hex>/`, iCloud's `/published/<n>/<key>`, Outlook's `/owa/calendar/<id>/<key>/`.
"""

import re

# Characters a URL cannot hold unencoded (RFC 3986), so one ends at the first of them.
_STOP = r"\s\x00-\x1f\x7f\"<>\\`{}|^"
_URL = re.compile(
    rf"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<authority>[^/?#{_STOP}]*)(?P<path>[^?#{_STOP}]*)"
    rf"(?P<rest>[?#][^{_STOP}]*)?"
    # A path alone, after a space, quote, `(`, `:` or `=`: only its query and fragment go.
    rf"|(?<![^\s'\"(:=])(?P<bare>/[^?#{_STOP}]*)(?P<bare_rest>[?#][^{_STOP}]+)"
)
# What usually ends a sentence or closes a bracket around a URL rather than belonging to it.
_TRAILING = ".,;:!?')]"
_SECRET_SEGMENTS = (
    re.compile(r"(?<=/private-)[0-9a-fA-F]+(?![0-9A-Za-z])"),
    re.compile(r"(?<=/published/)(\d+/)[A-Za-z0-9_\-]+"),
    re.compile(rf"(?<=/owa/calendar/)([^/?#{_STOP}]+/)[^/?#{_STOP}]+"),
)


def redact(text: str) -> str:
    """`text` with the credentials, queries, fragments and calendar keys of its URLs replaced."""
    text = _URL.sub(_redacted_url, text)
    for pattern in _SECRET_SEGMENTS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + "…", text)
    return text


def _redacted_url(match: re.Match) -> str:
    if match["bare"] is not None:
        return match["bare"] + _redacted_rest(match["bare_rest"])
    authority = match["authority"].rpartition("@")[2]
    # A URL inside the path (an archive's link to another page) is redacted in turn.
    path = _URL.sub(_redacted_url, match["path"])
    return match["scheme"] + authority + path + _redacted_rest(match["rest"] or "")


def _redacted_rest(rest: str) -> str:
    """`?…` or `#…` for a query or fragment, keeping punctuation that follows the URL."""
    body = rest[:1] + rest[1:].rstrip(_TRAILING)
    if len(body) <= 1:
        return rest
    return rest[0] + "…" + rest[len(body):]
