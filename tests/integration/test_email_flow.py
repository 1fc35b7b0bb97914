"""The email flow end to end against a real Dovecot on 127.0.0.1 (IMAP over TLS with a
certificate made here): `loom fetch email` → Kafka → `loom process` → email_raw,
email_messages, email_embeddings; later fetches publish only what is new, a renumbered folder
(new UIDVALIDITY) publishes nothing twice, a broken message becomes an error row with its bytes."""

import json
import os
import pwd
import shutil
import ssl
import subprocess
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from imapclient import IMAPClient

from loom_assets.ports import free_port, wait_for_tcp
from tests.integration.test_spine import invoke, produce, table

pytestmark = pytest.mark.integration

DOVECOT = Path("/usr/sbin/dovecot")
USER, PASSWORD = "me@example.org", "correct horse battery staple"
TOPIC = "external.email.events.raw"


def _certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (the IP in its subjectAltName, so the host
    name check passes) and its key."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    # Dated by the clock that checks it (this process's OpenSSL), not a shifted one of the tools
    # around it (scripts/test-anytime.sh preloads libfaketime into them).
    own_clock = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True, env=own_clock)
    return cert, key


@pytest.fixture
def dovecot(tmp_path):
    """A Dovecot IMAP server of its own (config, base_dir, passwd-file user, maildir) on a free
    port of 127.0.0.1, TLS required. As root its mail processes run as `nobody` (Dovecot
    refuses uid 0), which cannot enter pytest's 0700 tmp_path: then its folder is a temporary
    one of its own, removed afterwards."""
    if not DOVECOT.exists():
        pytest.skip("Dovecot is not installed (/usr/sbin/dovecot; Debian package dovecot-imapd)")
    root = os.geteuid() == 0
    home = Path(tempfile.mkdtemp(prefix="loom-dovecot-")) if root else tmp_path / "dovecot"
    home.mkdir(exist_ok=True)
    home.chmod(0o755)
    mail_user = pwd.getpwnam("nobody") if root else pwd.getpwuid(os.geteuid())
    (home / "mail").mkdir()
    os.chown(home / "mail", mail_user.pw_uid, mail_user.pw_gid)
    cert, key = _certificate(home)
    (home / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}::::::\n")
    port = free_port()
    service_users = "" if root else (f"default_internal_user = {mail_user.pw_name}\n"
                                     f"default_login_user = {mail_user.pw_name}\n")
    config = home / "dovecot.conf"
    config.write_text(f"""
base_dir = {home}/run
state_dir = {home}/state
log_path = {home}/dovecot.log
{service_users}protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <{cert}
ssl_key = <{key}
auth_mechanisms = plain
# Dovecot clears its processes' environment: keep a shifted clock (scripts/test-anytime.sh).
import_environment = TZ LD_PRELOAD FAKETIME NO_FAKE_STAT
mail_location = maildir:{home}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {home}/passwd
}}
userdb {{
  driver = static
  args = uid={mail_user.pw_uid} gid={mail_user.pw_gid} home={home}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {port}
    ssl = yes
  }}
}}
namespace inbox {{
  inbox = yes
  mailbox Sent {{
    special_use = \\Sent
    auto = subscribe
  }}
}}
""")
    for folder in ("run", "state"):
        (home / folder).mkdir()
    server = subprocess.Popen([str(DOVECOT), "-F", "-c", str(config)])
    try:
        wait_for_tcp("127.0.0.1", port, server, time.monotonic() + 20, what="Dovecot")
    except (RuntimeError, TimeoutError) as error:
        server.kill()
        log = (home / "dovecot.log").read_text() if (home / "dovecot.log").exists() else ""
        pytest.fail(f"{error}: {log[-2000:]}")
    yield {"port": port, "ca_file": str(cert), "home": home}
    server.terminate()
    server.wait(timeout=20)
    if root:
        shutil.rmtree(home, ignore_errors=True)


def imap(server) -> IMAPClient:
    client = IMAPClient("127.0.0.1", port=server["port"], ssl=True,
                        ssl_context=ssl.create_default_context(cafile=server["ca_file"]), timeout=20)
    client.login(USER, PASSWORD)
    return client


def mail(subject: str, sender: str, to: str, text: str | None = None, html: str | None = None,
         message_id: str | None = None, reply_to: str | None = None, attachment: tuple[str, bytes] | None = None) -> bytes:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, to, subject
    message["Date"] = "Mon, 02 Mar 2026 09:15:00 +0000"
    message["Message-ID"] = message_id or f"<{uuid.uuid4().hex}@example.org>"
    if reply_to:
        message["In-Reply-To"] = message["References"] = reply_to
    if text is not None:
        message.set_content(text)
        if html is not None:
            message.add_alternative(html, subtype="html")
    else:
        message.set_content(html, subtype="html")
    if attachment:
        message.add_attachment(attachment[1], maintype="application", subtype="pdf", filename=attachment[0])
    return message.as_bytes()


BROKEN = (b"From: Scanner <scanner@example.org>\r\nTo: me@example.org\r\nSubject: Scan 0042\r\n"
          b"Message-ID: <scan-0042@example.org>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed\r\n\r\n"
          b"This multipart message has no boundary, so its parts cannot be found.\r\n")
QUARTERLY = mail("Quarterly budget review moved to Thursday", "Ann Lee <ann@example.org>", USER,
                 text="Hi,\n\nThe quarterly budget review moves to Thursday at 14:00 in room 4.\n\nAnn\n",
                 html="<p>Hi,</p><p>The quarterly budget review moves to Thursday at 14:00 in room 4.</p><p>Ann</p>",
                 message_id="<budget-review@example.org>", attachment=("budget-q3.pdf", b"%PDF-1.7\n" + b"0" * 4000))
NEWSLETTER = mail("Hiking club: autumn trail schedule", "Hiking Club <club@trails.example>", USER,
                  html="<html><body><h1>Autumn trails</h1><p>Saturday we climb <b>Mount Tam</b>, meeting at the "
                       "trailhead parking at 8am.</p><script>track()</script></body></html>",
                  message_id="<autumn-trails@trails.example>")
REPLY = mail("Re: Quarterly budget review moved to Thursday", f"Me <{USER}>", "Ann Lee <ann@example.org>",
             text="Thursday works for me, I will bring the forecast spreadsheet.\n\n"
                  "On Mon, 2 Mar 2026 at 09:15, Ann Lee <ann@example.org> wrote:\n"
                  "> The quarterly budget review moves to Thursday at 14:00 in room 4.\n",
             message_id="<reply-budget@example.org>", reply_to="<budget-review@example.org>")
OLD = mail("Ancient history", "Bob <bob@example.net>", USER, text="From long ago.", message_id="<old@example.net>")
LATE = mail("Dentist appointment reminder", "Clinic <noreply@dental.example>", USER,
            text="Your dental cleaning is booked for Friday at 10:30.", message_id="<dentist@dental.example>")


def topic_records(bootstrap: str) -> list[dict]:
    """Every record of the email topic, decoded."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "enable.partition.eof": True})
    try:
        meta = consumer.list_topics(TOPIC, timeout=10).topics[TOPIC]
        partitions = [TopicPartition(TOPIC, p, 0) for p in meta.partitions]
        ends = {tp.partition: consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in partitions}
        wanted = sum(ends.values())
        consumer.assign(partitions)
        records = []
        deadline = time.monotonic() + 30
        while len(records) < wanted and time.monotonic() < deadline:
            message = consumer.poll(1)
            if message is not None and not message.error():
                records.append(json.loads(message.value()))
        assert len(records) == wanted
        return records
    finally:
        consumer.close()


def test_mail_is_fetched_incrementally_and_becomes_searchable(loom_env, dovecot, monkeypatch):
    for name, value in {"LOOM_EMAIL_ADDRESS_1": USER, "LOOM_EMAIL_PASSWORD_1": PASSWORD, "LOOM_EMAIL_NAME_1": "Personal",
                        "LOOM_EMAIL_IMAP_SERVER_1": "127.0.0.1", "LOOM_EMAIL_IMAP_PORT_1": str(dovecot["port"]),
                        "LOOM_EMAIL_CA_FILE_1": dovecot["ca_file"]}.items():
        monkeypatch.setenv(name, value)
    now = datetime.now(UTC)
    client = imap(dovecot)
    client.append("INBOX", QUARTERLY, msg_time=now - timedelta(days=3))
    client.append("INBOX", NEWSLETTER, msg_time=now - timedelta(days=2))
    client.append("INBOX", BROKEN, msg_time=now - timedelta(days=1))
    client.append("INBOX", OLD, msg_time=now - timedelta(days=45))  # beyond the 30 days
    client.append("Sent", REPLY, flags=[b"\\Seen"], msg_time=now - timedelta(days=2, hours=-1))

    invoke("fetch", "email")
    first = topic_records(loom_env["bootstrap"])
    assert sorted((r["data"]["folder"], r["data"]["uid"]) for r in first) == [
        ("INBOX", 1), ("INBOX", 2), ("INBOX", 3), ("Sent", 1)]
    assert {r["device_id"] for r in first} == {"email-personal"}
    budget = next(r for r in first if r["data"]["uid"] == 1 and r["data"]["folder"] == "INBOX")
    assert budget["timestamp"].startswith((now - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M"))
    assert budget["data"]["attachments"] == [{"filename": "budget-q3.pdf", "content_type": "application/pdf",
                                              "size": 4009}]
    # BODY.PEEK on a read-only selection: fetching marked nothing as read.
    client.select_folder("INBOX", readonly=True)
    flags = client.get_flags(client.search("ALL"))
    assert len(flags) == 4 and all(b"\\Seen" not in f for f in flags.values())

    invoke("fetch", "email")
    assert len(topic_records(loom_env["bootstrap"])) == 4  # nothing new, nothing again

    client.append("INBOX", LATE, msg_time=now - timedelta(minutes=5))
    invoke("fetch", "email")
    records = topic_records(loom_env["bootstrap"])
    assert len(records) == 5
    assert [(r["data"]["folder"], r["data"]["uid"]) for r in records if r not in first] == [("INBOX", 5)]

    # The Sent folder deleted and made again with the same message: a new UIDVALIDITY, a resync
    # of its last 30 days, and nothing published twice.
    old_validity = client.select_folder("Sent", readonly=True)[b"UIDVALIDITY"]
    client.unselect_folder()
    client.delete_folder("Sent")
    time.sleep(1.1)  # Dovecot derives UIDVALIDITY from the clock
    client.create_folder("Sent")
    client.append("Sent", REPLY, flags=[b"\\Seen"], msg_time=now - timedelta(days=2, hours=-1))
    assert client.select_folder("Sent", readonly=True)[b"UIDVALIDITY"] != old_validity
    client.logout()
    invoke("fetch", "email")
    assert len(topic_records(loom_env["bootstrap"])) == 5
    cursor = table(loom_env["database_url"], "fetch_cursors", order="account").iloc[0]
    assert cursor["account"] == "Personal" and cursor["state"]["folders"]["INBOX"]["last_uid"] == 5
    assert cursor["state"]["folders"]["Sent"]["uidvalidity"] != old_validity

    # What Loom v2's email fetcher published (docs/messages.md#fetcher-envelopes: naive local time)
    # lands beside it.
    received = (now - timedelta(days=4)).strftime("%Y-%m-%dT%H:%M:%S")
    produce(loom_env["bootstrap"], [(TOPIC, json.dumps({
        "schema_version": "v1", "device_id": "email-fetcher-account-1", "timestamp": received,
        "content_hash": "9c1f", "data": {
            "email_id": f"{USER}:12", "content_hash": "9c1f", "message_id": "<v2-invoice@billing.example>",
            "subject": "Invoice 1042", "sender": "Billing <billing@billing.example>", "receiver": USER,
            "date_received": received, "body": "Your invoice 1042 is ready.", "seen": True,
            "source_account": USER, "account_name": "Personal", "account_index": 1}}).encode())], key=b"9c1f")

    invoke("process", "--through-now", "--flow", "email")
    url = loom_env["database_url"]
    raw = table(url, "email_raw")
    assert len(raw) == 6
    assert bytes(raw[raw["uid"] == 3].iloc[0]["raw_message"]) == BROKEN

    v2 = table(url, "email_messages WHERE body_source = 'loom_v2'", order="recorded_at")
    assert v2[["message_id", "folder", "from_address", "body_text"]].values.tolist() == [
        ["v2-invoice@billing.example", "INBOX", "billing@billing.example", "Your invoice 1042 is ready."]]
    messages = table(url, "email_messages WHERE body_source <> 'loom_v2'", order="recorded_at")
    assert messages["subject"].tolist() == [
        "Quarterly budget review moved to Thursday", "Hiking club: autumn trail schedule",
        "Re: Quarterly budget review moved to Thursday", "Dentist appointment reminder"]
    budget, trails, reply, _ = messages.to_dict("records")
    assert budget["body_source"] == "plain" and "room 4" in budget["body_text"]
    assert budget["attachments"][0]["filename"] == "budget-q3.pdf"
    assert trails["body_source"] == "html" and "Mount Tam" in trails["body_text"] and "track" not in trails["body_text"]
    assert (reply["folder"], reply["thread_id"], reply["seen"]) == ("Sent", "budget-review@example.org", True)
    assert reply["body_text"] == "Thursday works for me, I will bring the forecast spreadsheet."
    assert "room 4" in reply["quoted_text"]
    assert budget["thread_id"] == "budget-review@example.org" and budget["seen"] is False

    vectors = table(url, "(SELECT *, vector_dims(embedding) AS dims FROM email_embeddings) e", order="recorded_at")
    assert vectors["source_id"].tolist() == ["v2-invoice@billing.example", *messages["message_id"]]
    assert vectors["dims"].tolist() == [384] * 5
    vectors = vectors.iloc[1:]
    assert vectors.iloc[0]["body"].startswith("From: Ann Lee <ann@example.org>\nSubject: Quarterly budget review")
    hits = table(url, "email_messages WHERE to_tsvector('english', coalesce(subject, '') || ' ' || body_text)"
                      " @@ plainto_tsquery('english', 'dental cleaning')", order="recorded_at")
    assert hits["message_id"].tolist() == ["dentist@dental.example"]

    errors = table(url, "processing_errors WHERE flow = 'email/messages'", order="source_offset")
    assert errors["error_type"].tolist() == ["broken_mime"]
    assert bytes(errors.iloc[0]["original_value"]) == BROKEN
    assert errors.iloc[0]["device_id"] == "email-personal"
