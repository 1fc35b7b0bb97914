"""Email parsing (stage `messages`), the embedded text and the fetcher's account settings."""

import base64
from datetime import UTC, datetime
from email.message import EmailMessage

import pandas as pd
import pytest

from loom_assets.events import InvalidMessage, decode
from loom_assets.fetchers.email import EmailAccount, accounts, message_digest, without_attachment_contents
from loom_assets.stages.email import (
    EMBEDDING_TEXT_CHARS,
    decode_text,
    email_messages,
    embedding_items,
    embedding_text,
    html_to_text,
    split_quoted,
)

AT = datetime(2026, 3, 3, 10, 0, tzinfo=UTC)


def raw_rows(*messages: bytes, folder: str = "INBOX", **extra) -> pd.DataFrame:
    return pd.DataFrame([{
        "window_start": AT, "device_id": "email-me", "recorded_at": AT, "source_topic": "external.email.events.raw",
        "source_partition": 0, "source_offset": i, "message_id": f"m{i}", "raw_message": message,
        "account": "me@example.org", "folder": folder, "uid": i + 1, "flags": ["\\Seen"], **extra,
    } for i, message in enumerate(messages)])


def only_row(*messages: bytes, **extra) -> dict:
    result = email_messages(raw_rows(*messages, **extra))
    assert result.errors.empty, result.errors.to_dict("records")
    assert len(result.rows) == 1
    return result.rows.iloc[0].to_dict()


def alternative() -> bytes:
    message = EmailMessage()
    message["From"] = "Ann Lee <Ann@Example.org>"
    message["To"] = "me@example.org, Bob <bob@example.net>"
    message["Cc"] = "carol@example.com"
    message["Subject"] = "Budget review on Thursday"
    message["Date"] = "Tue, 03 Mar 2026 09:58:00 +0100"
    message["Message-ID"] = "<budget-1@example.org>"
    message["References"] = "<root-0@example.org> <prev-1@example.org>"
    message["In-Reply-To"] = "<prev-1@example.org>"
    message.set_content("Can we move the budget review to Thursday afternoon?\n")
    message.add_alternative("<p>Can we move the <b>budget review</b> to Thursday afternoon?</p>", subtype="html")
    return message.as_bytes()


def test_multipart_alternative_takes_the_text_part_and_the_headers():
    row = only_row(alternative())
    assert row["body_text"] == "Can we move the budget review to Thursday afternoon?"
    assert row["body_source"] == "plain"
    assert row["message_id"] == "budget-1@example.org"
    assert row["thread_id"] == "root-0@example.org"  # the References root
    assert row["in_reply_to"] == "prev-1@example.org"
    assert (row["from_name"], row["from_address"]) == ("Ann Lee", "ann@example.org")
    assert [a["address"] for a in row["to_addresses"]] == ["me@example.org", "bob@example.net"]
    assert [a["address"] for a in row["cc_addresses"]] == ["carol@example.com"]
    assert row["subject"] == "Budget review on Thursday"
    assert row["sent_at"] == pd.Timestamp("2026-03-03T08:58:00Z")
    assert row["headers"]["subject"] == "Budget review on Thursday"
    assert row["seen"] is True and row["attachments"] == [] and row["charset_issues"] is None


def test_gmail_thread_id_wins_and_a_lone_message_is_its_own_thread():
    message = EmailMessage()
    message["From"], message["Message-ID"] = "a@example.org", "<solo@example.org>"
    message.set_content("hi")
    assert only_row(message.as_bytes())["thread_id"] == "solo@example.org"
    assert only_row(alternative(), gmail_thread_id="1791234567890")["thread_id"] == "gmail:1791234567890"


def test_html_only_message_is_sanitised_to_text():
    message = EmailMessage()
    message["From"], message["Subject"], message["Message-ID"] = "news@example.org", "Weekly", "<w@example.org>"
    message.set_content(
        "<html><head><title>ignored</title><style>p {color: red}</style></head><body>"
        "<script>alert('x')</script><h1>Release notes</h1><p>Version&nbsp;2.4 ships <b>today</b>.</p>"
        "<ul><li>Faster sync</li><li>Dark mode</li></ul><!-- tracking --></body></html>", subtype="html")
    row = only_row(message.as_bytes())
    assert row["body_source"] == "html"
    assert row["body_text"] == "Release notes\n\nVersion 2.4 ships today.\n\nFaster sync\nDark mode"
    for leaked in ("alert", "color", "ignored", "tracking", "<"):
        assert leaked not in row["body_text"]


def test_html_blockquote_is_a_quoted_reply():
    text = html_to_text("<div>Sounds good.</div><div>On Mon, Ann wrote:</div><blockquote>Lunch at noon?</blockquote>")
    assert split_quoted(text) == ("Sounds good.", "On Mon, Ann wrote:\n> Lunch at noon?")


@pytest.mark.parametrize("text, new, quoted", [
    ("Yes, Thursday works.\n\nOn Tue, 3 Mar 2026 at 09:58, Ann Lee <ann@example.org> wrote:\n> Can we move it?\n> Thanks",
     "Yes, Thursday works.", "On Tue, 3 Mar 2026 at 09:58, Ann Lee <ann@example.org> wrote:\n> Can we move it?\n> Thanks"),
    # the attribution wrapped over two lines
    ("Fine by me.\nOn Tue, 3 Mar 2026 at 09:58, Ann Lee\n<ann@example.org> wrote:\n> Can we move it?",
     "Fine by me.", "On Tue, 3 Mar 2026 at 09:58, Ann Lee\n<ann@example.org> wrote:\n> Can we move it?"),
    # inline replies between quoted lines stay new text
    ("> Is the room booked?\nYes, room 4.\n> And the projector?\nAlso yes.",
     "Yes, room 4.\nAlso yes.", "> Is the room booked?\n> And the projector?"),
    ("See attached.\n\n-----Original Message-----\nFrom: Bob\nSent: Monday\nSubject: report\n\nPlease send the report.",
     "See attached.", "-----Original Message-----\nFrom: Bob\nSent: Monday\nSubject: report\n\nPlease send the report."),
    ("Thanks!\n________________________________\nFrom: Bob <bob@example.net>\nSent: Monday\nHello",
     "Thanks!", "________________________________\nFrom: Bob <bob@example.net>\nSent: Monday\nHello"),
    ("No quotes here.\nOn second thought, nothing.", "No quotes here.\nOn second thought, nothing.", None),
])
def test_quoted_replies_are_separated_from_the_new_text(text, new, quoted):
    assert split_quoted(text) == (new, quoted)


def test_attachments_metadata():
    message = EmailMessage()
    message["From"], message["Message-ID"] = "ann@example.org", "<att@example.org>"
    message.set_content("The slides and the data.")
    message.add_attachment(b"%PDF-1.7 " + b"x" * 1000, maintype="application", subtype="pdf", filename="slides.pdf")
    message.add_attachment("a,b\n1,2\n", subtype="csv", filename="data.csv")
    row = only_row(message.as_bytes())
    assert row["body_text"] == "The slides and the data."
    assert row["attachments"] == [
        {"filename": "slides.pdf", "content_type": "application/pdf", "size": 1009},
        {"filename": "data.csv", "content_type": "text/csv", "size": 8},
    ]
    # A message too large to publish whole keeps its text and its attachments' sizes.
    stripped = without_attachment_contents(message.as_bytes())
    assert b"xxxxxxxx" not in stripped
    rows = email_messages(raw_rows(stripped)).rows
    assert rows.iloc[0]["attachments"][0] == {"filename": "slides.pdf", "content_type": "application/pdf", "size": 1009}
    assert rows.iloc[0]["body_text"] == "The slides and the data."


def test_latin1_mislabelled_as_utf8_is_decoded_and_flagged():
    raw = ("From: Jérôme <jerome@example.fr>\r\nSubject: Réunion\r\nMessage-ID: <l1@example.fr>\r\n"
           "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
           "Le café est à 10 h, déjà réservé.\r\n").encode("latin-1")
    row = only_row(raw)
    assert row["body_text"] == "Le café est à 10 h, déjà réservé."
    assert row["from_name"] == "Jérôme" and row["subject"] == "Réunion"
    assert row["charset_issues"] == ["charset_mismatch:utf-8->cp1252", "header_charset:subject", "header_charset:from"]


def test_unknown_charset_over_utf8_bytes_is_read_and_flagged():
    text, issues = decode_text("naïve".encode(), "x-mac-unknown")
    assert (text, issues) == ("naïve", ["unknown_charset:x-mac-unknown"])


BROKEN = {
    "broken_mime": b"From: a@example.org\r\nMessage-ID: <b1@x>\r\nContent-Type: multipart/mixed\r\n\r\nno boundary\r\n",
    "undecodable_base64": (b"From: a@example.org\r\nMessage-ID: <b2@x>\r\nContent-Type: text/plain; charset=utf-8\r\n"
                           b"Content-Transfer-Encoding: base64\r\n\r\naGVsbG8gd29ybGQhx\r\n"),
    "unknown_charset": (b"From: a@example.org\r\nMessage-ID: <b3@x>\r\nContent-Type: text/plain; charset=x-bogus\r\n"
                        b"Content-Transfer-Encoding: 8bit\r\n\r\nh\xe9llo \xff\xfe\r\n"),
}


@pytest.mark.parametrize("error_type", sorted(BROKEN))
def test_a_broken_message_is_an_error_row_with_its_bytes(error_type):
    result = email_messages(raw_rows(BROKEN[error_type], alternative()))
    assert result.rows["message_id"].tolist() == ["budget-1@example.org"]  # the window goes on
    assert result.errors["error_type"].tolist() == [error_type]
    assert result.errors.iloc[0]["original"] == BROKEN[error_type]
    assert result.errors.iloc[0]["source_offset"] == 0


def test_one_row_per_message_and_folder_in_a_window():
    frame = pd.concat([raw_rows(alternative(), alternative()), raw_rows(alternative(), folder="Sent")], ignore_index=True)
    frame["source_offset"] = range(len(frame))
    rows = email_messages(frame).rows
    assert sorted(zip(rows["folder"], rows["source_offset"])) == [("INBOX", 0), ("Sent", 2)]
    assert len(embedding_items(rows)) == 1  # one text to search


def loom_v2_record(**data) -> bytes:
    import json
    return json.dumps({
        "schema_version": "v1", "device_id": "email-fetcher-account-1", "timestamp": "2026-03-03T09:58:00",
        "content_hash": "c0ffee", "data": {
            "email_id": "me@example.org:42", "content_hash": "c0ffee", "message_id": "<v2@example.org>",
            "subject": "Invoice 1042", "sender": "Billing <billing@example.com>", "receiver": "me@example.org",
            "date_received": "2026-03-03T09:58:00", "body": "Your invoice is attached.\n\n> old text",
            "seen": False, "source_account": "me@example.org", "account_name": "Personal", "account_index": 1,
            **data}}).encode()


def test_loom_v2_fetcher_shape_becomes_a_message():
    message = decode("external.email.events.raw", loom_v2_record(), partition=0, offset=7)
    payload = message.payload
    assert payload.raw_message is None and payload.header_message_id == "<v2@example.org>"
    assert payload.account == "me@example.org"
    frame = pd.DataFrame([{"window_start": AT, "device_id": message.device_id, "recorded_at": message.recorded_at,
                           "source_topic": "external.email.events.raw", "source_partition": 0, "source_offset": 7,
                           "message_id": message.message_id, **payload.__dict__}])
    result = email_messages(frame)
    row = result.rows.iloc[0]
    assert result.errors.empty
    assert (row["message_id"], row["folder"], row["body_source"]) == ("v2@example.org", "INBOX", "loom_v2")
    assert (row["from_name"], row["from_address"]) == ("Billing", "billing@example.com")
    assert row["to_addresses"] == [{"name": "", "address": "me@example.org"}]
    assert (row["body_text"], row["quoted_text"]) == ("Your invoice is attached.", "> old text")
    assert row["seen"] is False or row["seen"] == False  # noqa: E712 - pandas' nullable boolean
    assert embedding_text(result.rows).iloc[0] == (
        "From: Billing <billing@example.com>\nSubject: Invoice 1042\nYour invoice is attached.")


def test_a_record_with_neither_message_nor_fields_is_invalid():
    with pytest.raises(InvalidMessage) as error:
        decode("external.email.events.raw", loom_v2_record(subject=None, sender=None, body=None), partition=0, offset=0)
    assert error.value.error_type == "validation_error"


def test_raw_message_travels_as_base64_and_lands_as_bytes():
    import json
    raw = alternative()
    value = json.dumps({"schema_version": "v1", "device_id": "email-me", "timestamp": "2026-03-03T09:00:00Z",
                        "data": {"raw_message": base64.b64encode(raw).decode(), "folder": "INBOX", "uid": 3}}).encode()
    assert decode("external.email.events.raw", value, partition=0, offset=0).payload.raw_message == raw


def test_embedding_text_is_bounded():
    rows = only_row(alternative())
    frame = pd.DataFrame([{**rows, "body_text": "word " * 2000}])
    text = embedding_text(frame).iloc[0]
    assert text.startswith("From: Ann Lee <ann@example.org>\nSubject: Budget review on Thursday\nword word")
    assert len(text) == EMBEDDING_TEXT_CHARS


def test_message_digest_is_per_folder_and_message_id():
    raw = alternative()
    assert message_digest("INBOX", raw)[0] == message_digest("INBOX", raw.replace(b"Thursday afternoon", b"Friday"))[0]
    assert message_digest("INBOX", raw)[0] != message_digest("Sent", raw)[0]
    assert message_digest("INBOX", raw)[1] == "budget-1@example.org"


def test_accounts_come_from_loom_v2_numbered_variables():
    env = {
        "LOOM_EMAIL_ADDRESS_1": "me@gmail.com", "LOOM_EMAIL_PASSWORD_1": "app-password",
        "LOOM_EMAIL_ADDRESS_2": "work@example.org", "LOOM_EMAIL_PASSWORD_2": "pw", "LOOM_EMAIL_NAME_2": "Work Mail",
        "LOOM_EMAIL_IMAP_SERVER_2": "imap.example.org", "LOOM_EMAIL_IMAP_PORT_2": "1993",
        "LOOM_EMAIL_CA_FILE_2": "/etc/ssl/private-ca.pem",
        "LOOM_EMAIL_ADDRESS_3": "old@example.org", "LOOM_EMAIL_PASSWORD_3": "pw", "LOOM_EMAIL_DISABLED_3": "true",
        "LOOM_EMAIL_ADDRESS_11": "beyond@example.org", "LOOM_EMAIL_PASSWORD_11": "pw",
    }
    found = accounts(env)
    assert [(a.index, a.name, a.server, a.port, a.ca_file) for a in found] == [
        (1, "me@gmail.com", "imap.gmail.com", 993, None),
        (2, "Work Mail", "imap.example.org", 1993, "/etc/ssl/private-ca.pem"),
    ]
    assert [a.device_id for a in found] == ["email-me@gmail.com", "email-work-mail"]
    assert "app-password" not in repr(found[0])
    assert [a.index for a in accounts({**env, "LOOM_EMAIL_MAX_ACCOUNTS": "11"})] == [1, 2, 11]


def test_an_address_without_a_password_is_a_configuration_error():
    with pytest.raises(ValueError, match="LOOM_EMAIL_PASSWORD_1"):
        accounts({"LOOM_EMAIL_ADDRESS_1": "me@example.org"})
    assert accounts({}) == []
    assert isinstance(EmailAccount(1, "a@b.c", "pw", "a@b.c"), EmailAccount)
