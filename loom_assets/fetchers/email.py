"""The email fetcher (docs/flows/email.md#fetcher): IMAP over TLS, INBOX and Sent, messages up to 30 days old,
incremental by UIDVALIDITY + last UID per folder, published whole (RFC 822 bytes, base64) to
`external.email.events.raw` in the nested Loom v2 envelope.

Accounts come from Loom v2's numbered variables (docs/flows/email.md#fetcher), i =
1..LOOM_EMAIL_MAX_ACCOUNTS (10): LOOM_EMAIL_ADDRESS_i, _PASSWORD_i, _IMAP_SERVER_i (imap.gmail.com),
_IMAP_PORT_i (993), _NAME_i (the address), _DISABLED_i, and LOOM_EMAIL_CA_FILE_i: a PEM file of the
certificate authorities to trust instead of the system's (a server with a private or self-signed
certificate). TLS is always on and the certificate and host name always checked.

The cursor per account: {"folders": {folder: {"uidvalidity", "last_uid"}}, "published":
{digest of (folder, Message-ID): day of INTERNALDATE}}. A folder whose UIDVALIDITY changed (the
server renumbered it, or it was deleted and made again) is read again for the last 30 days, and
the digests keep what was already published from being published twice.
"""

import base64
import hashlib
import os
import re
import ssl
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email import policy
from email.parser import BytesHeaderParser, BytesParser
from typing import Any

from imapclient import IMAPClient
from imapclient.imapclient import SENT

from loom_assets.fetchers.base import Fetched, FetchResult, content_hash
from loom_assets.stages.email import attachment_metadata, bare_id

TOPIC = "external.email.events.raw"
MAX_AGE = timedelta(days=30)           # docs/flows/email.md#fetcher: 30 days
FETCH_INTERVAL_MINUTES = 15            # docs/flows/email.md#fetcher: every 15 minutes
MAX_ACCOUNTS = 10                      # docs/flows/email.md#fetcher: LOOM_EMAIL_MAX_ACCOUNTS
# Messages per account and run (LOOM_EMAIL_MAX_FETCH_PER_ACCOUNT, Loom v2's name;
# docs/flows/email.md#fetcher): a first sync of a busy mailbox spreads over a few runs instead of
# holding it all in memory.
MAX_PER_RUN = 500
# A message is published whole up to this size; above it the attachments' contents are emptied
# (their metadata kept), since base64 (x4/3) plus the envelope must stay under the raw landing's
# 10 MB record limit (LOOM_MAX_MESSAGE_BYTES).
MAX_PUBLISHED_BYTES = 7 * 1024 * 1024
# Bytes fetched per FETCH command: a few large messages, or 50 ordinary ones, at a time.
BATCH_BYTES = 20 * 1024 * 1024
BATCH_MESSAGES = 50
IMAP_TIMEOUT_S = 60


@dataclass(frozen=True)
class EmailAccount:
    index: int
    address: str
    password: str = field(repr=False)
    name: str
    server: str = "imap.gmail.com"
    port: int = 993
    ca_file: str | None = None
    max_per_run: int = MAX_PER_RUN

    @property
    def device_id(self) -> str:
        return "email-" + (re.sub(r"[^a-z0-9@._-]+", "-", self.name.lower()).strip("-") or str(self.index))


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def accounts(environ: Mapping[str, str] = os.environ) -> list[EmailAccount]:
    """The configured, enabled accounts. A configured address without a password, or two
    accounts with one name (the cursor's key), is a configuration error."""
    count = int(environ.get("LOOM_EMAIL_MAX_ACCOUNTS") or MAX_ACCOUNTS)
    per_run = int(environ.get("LOOM_EMAIL_MAX_FETCH_PER_ACCOUNT") or MAX_PER_RUN)
    found: list[EmailAccount] = []
    for i in range(1, count + 1):
        address = (environ.get(f"LOOM_EMAIL_ADDRESS_{i}") or "").strip()
        if not address or _truthy(environ.get(f"LOOM_EMAIL_DISABLED_{i}")):
            continue
        password = environ.get(f"LOOM_EMAIL_PASSWORD_{i}") or ""
        if not password:
            raise ValueError(f"LOOM_EMAIL_ADDRESS_{i} is set but LOOM_EMAIL_PASSWORD_{i} is not")
        found.append(EmailAccount(
            index=i, address=address, password=password,
            name=(environ.get(f"LOOM_EMAIL_NAME_{i}") or "").strip() or address,
            server=(environ.get(f"LOOM_EMAIL_IMAP_SERVER_{i}") or "").strip() or "imap.gmail.com",
            port=int(environ.get(f"LOOM_EMAIL_IMAP_PORT_{i}") or 993),
            ca_file=(environ.get(f"LOOM_EMAIL_CA_FILE_{i}") or "").strip() or None,
            max_per_run=per_run,
        ))
    names = [a.name for a in found]
    if len(set(names)) != len(names):
        raise ValueError(f"email accounts need distinct names (LOOM_EMAIL_NAME_i): {names}")
    return found


def connect(account: EmailAccount) -> IMAPClient:
    """A logged-in IMAP client over verified TLS (the system's CAs, or the account's CA file)."""
    context = ssl.create_default_context(cafile=account.ca_file)
    client = IMAPClient(account.server, port=account.port, ssl=True, ssl_context=context, timeout=IMAP_TIMEOUT_S)
    client.normalise_times = False  # INTERNALDATE with its offset, not converted to local naive time
    client.login(account.address, account.password)
    return client


def mail_folders(client: IMAPClient) -> list[str]:
    """INBOX and the Sent folder: by its SPECIAL-USE \\Sent flag, else the usual names
    (imapclient's find_special_folder does both)."""
    sent = client.find_special_folder(SENT)
    return ["INBOX"] + ([sent] if sent and sent.upper() != "INBOX" else [])


def _batches(uids: Sequence[int], sizes: Mapping[int, int]) -> Iterator[list[int]]:
    batch, total = [], 0
    for uid in uids:
        size = sizes.get(uid, 0)
        if batch and (len(batch) >= BATCH_MESSAGES or total + size > BATCH_BYTES):
            yield batch
            batch, total = [], 0
        batch.append(uid)
        total += size
    if batch:
        yield batch


def message_digest(folder: str, raw: bytes) -> tuple[str, str | None]:
    """(digest naming the message in its folder, its Message-ID). Without a Message-ID the
    bytes name it."""
    headers = BytesHeaderParser(policy=policy.default).parsebytes(raw)
    try:
        message_id = bare_id(str(headers.get("message-id") or "")) or None
    except (ValueError, TypeError, IndexError):  # a Message-ID the header parser cannot read
        message_id = None
    name = message_id or "sha256:" + hashlib.sha256(raw).hexdigest()
    return hashlib.sha256(f"{folder}\x1f{name}".encode()).hexdigest()[:24], message_id


def without_attachment_contents(raw: bytes) -> bytes:
    """The message with every attachment's content emptied and its size kept in an
    `X-Loom-Removed-Bytes` header: text and structure stay, the megabytes go."""
    message = BytesParser(policy=policy.default).parsebytes(raw)
    for part in message.walk():
        if part.is_multipart() or (part.get_content_maintype() == "text" and not part.is_attachment()):
            continue
        removed = len(part.get_payload(decode=True) or b"")
        part.set_payload("")
        part["X-Loom-Removed-Bytes"] = str(removed)
    return message.as_bytes()


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _utc(value: Any, fallback: datetime) -> datetime:
    if not isinstance(value, datetime):
        return fallback
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def fetch(account: EmailAccount, cursor: dict[str, Any], now: datetime) -> FetchResult:
    client = connect(account)
    try:
        return fetch_mailbox(client, account, cursor, now)
    finally:
        try:
            client.logout()
        except (OSError, IMAPClient.Error):  # the session is over either way
            pass


def fetch_mailbox(client: IMAPClient, account: EmailAccount, cursor: dict[str, Any], now: datetime) -> FetchResult:
    """New messages of INBOX and Sent since the cursor, read-only (EXAMINE and BODY.PEEK, so
    nothing is marked read), oldest UID first, at most `account.max_per_run`."""
    since: date = (now - MAX_AGE).date()
    keep_after = (now - MAX_AGE - timedelta(days=2)).date().isoformat()  # SINCE is by the server's day
    published: dict[str, str] = {k: v for k, v in (cursor.get("published") or {}).items() if v >= keep_after}
    folders: dict[str, dict[str, int]] = dict(cursor.get("folders") or {})
    gmail = b"X-GM-EXT-1" in client.capabilities()
    items = ["BODY.PEEK[]", "FLAGS", "INTERNALDATE", "RFC822.SIZE"] + (["X-GM-THRID", "X-GM-LABELS"] if gmail else [])
    budget = account.max_per_run
    messages: list[Fetched] = []
    for folder in mail_folders(client):
        selected = client.select_folder(folder, readonly=True)
        validity = int(selected[b"UIDVALIDITY"])
        state = folders.get(folder)
        if state and int(state["uidvalidity"]) == validity:
            last = int(state["last_uid"])
            # `UID n:*` always matches the highest UID, even when it is below n: filter.
            uids = [u for u in client.search(["UID", f"{last + 1}:*", "SINCE", since]) if u > last]
        else:  # first sync, or the folder was renumbered: the last 30 days again
            last = 0
            uids = client.search(["SINCE", since])
        uids = sorted(uids)[:max(budget, 0)]
        budget -= len(uids)
        if uids:
            sizes = {uid: int(v.get(b"RFC822.SIZE", 0)) for uid, v in client.fetch(uids, ["RFC822.SIZE"]).items()}
            for batch in _batches(uids, sizes):
                for uid, item in sorted(client.fetch(batch, items).items()):
                    found = _fetched(account, folder, validity, uid, item, published, now)
                    if found is not None:
                        messages.append(found)
        folders[folder] = {"uidvalidity": validity, "last_uid": max([last, *uids])}
    return FetchResult(messages, {"folders": folders, "published": published})


def _fetched(account: EmailAccount, folder: str, validity: int, uid: int, item: Mapping[bytes, Any],
             published: dict[str, str], now: datetime) -> Fetched | None:
    """The message to publish, or None when it was published before (its digest is known)."""
    raw = item.get(b"BODY[]")
    if raw is None:  # expunged between SEARCH and FETCH
        return None
    digest, message_id = message_digest(folder, raw)
    received = _utc(item.get(b"INTERNALDATE"), now)
    if digest in published:
        return None
    published[digest] = received.date().isoformat()
    parsed = BytesParser(policy=policy.default).parsebytes(raw)
    attachments = attachment_metadata(parsed)
    body = raw if len(raw) <= MAX_PUBLISHED_BYTES else without_attachment_contents(raw)
    data = {
        "raw_message": base64.b64encode(body).decode(),
        "account": account.address,
        "account_name": account.name,
        "account_index": account.index,
        "folder": folder,
        "uid": uid,
        "uidvalidity": validity,
        "flags": [_text(f) for f in item.get(b"FLAGS", ())],
        "internal_date": received.isoformat(),
        "size": int(item.get(b"RFC822.SIZE") or len(raw)),
        "attachments": attachments,
    }
    if b"X-GM-THRID" in item:
        data["gmail_thread_id"] = str(item[b"X-GM-THRID"])
        data["gmail_labels"] = [_text(label) for label in item.get(b"X-GM-LABELS", ())]
    return Fetched(
        key=digest,
        device_id=account.device_id,
        timestamp=received,
        data=data,
        content_hash=content_hash(account.address, folder, message_id or hashlib.sha256(raw).hexdigest()),
    )
