"""The calendar flow end to end against real servers on 127.0.0.1: a Radicale CalDAV server (its
own config, plain htpasswd, storage under tmp_path) populated with the caldav client, and an ICS
file served over HTTP. `loom fetch calendar` → Kafka → `loom process` → calendar_raw,
calendar_events, calendar_embeddings; a second fetch publishes nothing; a new event is published
alone; an unreadable event (from the feed, and in a Loom v2 message) becomes an error row with
the original kept while the window completes."""

import functools
import json
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import caldav
import pandas as pd
import pytest
from confluent_kafka import Consumer, TopicPartition

from loom_assets.ports import free_port, wait_for_tcp
from tests.integration.test_spine import invoke, produce, table

pytestmark = pytest.mark.integration

TOPIC = "external.calendar.events.raw"
OWNER = "alice@example.com"


@pytest.fixture
def radicale(tmp_path):
    """A Radicale server with user alice (plain htpasswd), its storage under tmp_path."""
    port, folder = free_port(), tmp_path / "radicale"
    folder.mkdir()
    (folder / "users").write_text("alice:secret\n")
    (folder / "config").write_text(
        f"[server]\nhosts = 127.0.0.1:{port}\n"
        f"[auth]\ntype = htpasswd\nhtpasswd_filename = {folder / 'users'}\nhtpasswd_encryption = plain\n"
        f"[storage]\nfilesystem_folder = {folder / 'collections'}\n"
        "[rights]\ntype = owner_only\n[logging]\nlevel = warning\n")
    server = subprocess.Popen([sys.executable, "-m", "radicale", "--config", str(folder / "config")])
    try:
        wait_for_tcp("127.0.0.1", port, server, time.monotonic() + 30, what="Radicale")
    except (RuntimeError, TimeoutError):
        server.kill()
        raise
    yield f"http://127.0.0.1:{port}/"
    server.terminate()
    server.wait(timeout=10)


class QuietHandler(SimpleHTTPRequestHandler):
    """No access log on stderr: tests read stderr for what Loom printed."""

    def log_message(self, format, *args):
        pass


@pytest.fixture
def ics_server(tmp_path):
    """An HTTP server (in a thread) serving tmp_path/www."""
    www = tmp_path / "www"
    www.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(www)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _stamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def vcalendar(*events: str) -> str:
    return "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//loom tests//EN\r\n" + "".join(events) + "END:VCALENDAR\r\n"


def vevent(uid: str, start: datetime, summary: str, *lines: str, minutes: int | None = 30) -> str:
    end = f"DTEND:{_stamp(start + timedelta(minutes=minutes))}\r\n" if minutes else ""
    body = "".join(f"{line}\r\n" for line in lines)
    return (f"BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:{_stamp(start)}\r\nDTSTART:{_stamp(start)}\r\n{end}"
            f"SUMMARY:{summary}\r\n{body}END:VEVENT\r\n")


def topic_messages(bootstrap: str) -> list[tuple[str, dict]]:
    """Every message on the topic, read up to the high watermarks of this moment."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "calendar-test", "enable.auto.commit": False})
    partitions = consumer.list_topics(TOPIC, timeout=10).topics[TOPIC].partitions
    highs = {p: consumer.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=10)[1] for p in partitions}
    consumer.assign([TopicPartition(TOPIC, p, 0) for p in partitions])
    found, read, deadline = [], {p: 0 for p in partitions}, time.monotonic() + 30
    while any(read[p] < highs[p] for p in partitions) and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and not message.error():
            read[message.partition()] = message.offset() + 1
            found.append((message.key().decode(), json.loads(message.value())))
    consumer.close()
    return found


def loom_v2_message(start: datetime, *, event_id: str, summary: str, start_time: str | None = None) -> bytes:
    """What Loom v2's calendar fetcher produced (docs/messages.md#fetcher-envelopes)."""
    return json.dumps({
        "schema_version": "v1", "device_id": "calendar-fetcher-google-calendar", "timestamp": start.isoformat(),
        "data": {"event_id": event_id, "source_calendar": "Google Calendar", "summary": summary,
                 "description": "Quarterly numbers", "location": "Hamburg",
                 "start_time": start_time or start.isoformat(),
                 "end_time": (start + timedelta(hours=1)).isoformat(), "organizer": "cfo@example.com",
                 "attendees": ["cfo@example.com", "alice@example.com", "bob@example.com"], "uid": event_id,
                 "content_hash": "0" * 64, "source_url": "https://calendar.example.com",
                 "source_account": "alice", "account_name": "Google", "calendar_index": 1,
                 "calendar_name": "Google Calendar"},
    }).encode()


def test_calendars_are_fetched_incrementally_enriched_and_embedded(loom_env, radicale, ics_server, monkeypatch):
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    tomorrow = (now + timedelta(days=1)).replace(hour=9, minute=0)

    # CalDAV: one resource per UID (Radicale refuses several UIDs in one).
    work = caldav.DAVClient(url=radicale, username="alice", password="secret").principal().make_calendar(name="Work")
    work.save_event(vcalendar(vevent(
        "standup", tomorrow, "Storage migration standup", "RRULE:FREQ=WEEKLY;COUNT=3",
        f"ORGANIZER:mailto:{OWNER}", f"ATTENDEE;PARTSTAT=ACCEPTED:mailto:{OWNER}",
        "ATTENDEE;PARTSTAT=ACCEPTED;CN=Bob:mailto:bob@example.com",
        "ATTENDEE;PARTSTAT=ACCEPTED:mailto:carol@example.com", minutes=15)))
    work.save_event(vcalendar(vevent(
        "partner-review", tomorrow + timedelta(hours=5), "Contract review with Acme",
        "LOCATION:Meeting room 2, Berlin", "DESCRIPTION:Renewal terms for next year",
        "ORGANIZER:mailto:dana@acme.example", f"ATTENDEE;PARTSTAT=ACCEPTED:mailto:{OWNER}",
        "ATTENDEE;PARTSTAT=ACCEPTED:mailto:dana@acme.example", minutes=90)))
    work.save_event(vcalendar(vevent(
        "vendor-pitch", tomorrow + timedelta(days=1), "Vendor pitch", "ORGANIZER:mailto:sales@vendor.example",
        f"ATTENDEE;PARTSTAT=DECLINED:mailto:{OWNER}")))

    # ICS over HTTP: an all-day event, one without an end, one whose DTSTART cannot be read.
    www, base = ics_server
    (www / "team.ics").write_text(vcalendar(
        f"BEGIN:VEVENT\r\nUID:offsite\r\nDTSTAMP:{_stamp(now)}\r\nDTSTART;VALUE=DATE:"
        f"{(now + timedelta(days=3)):%Y%m%d}\r\nSUMMARY:Team offsite\r\nEND:VEVENT\r\n",
        vevent("retro", now - timedelta(days=2), "Sprint retro", "LOCATION:https://meet.google.com/abc-defg-hij",
               minutes=None),
        "BEGIN:VEVENT\r\nUID:garbled\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:2026-13-45 nonsense\r\n"
        "SUMMARY:Garbled\r\nEND:VEVENT\r\n"))

    monkeypatch.setenv("LOOM_ICAL_URL_1", f"{base}/team.ics")
    monkeypatch.setenv("LOOM_CALENDAR_NAME_1", "Team")
    monkeypatch.setenv("LOOM_CALDAV_URL_2", radicale)
    monkeypatch.setenv("LOOM_CALDAV_USERNAME_2", "alice")
    monkeypatch.setenv("LOOM_CALDAV_PASSWORD_2", "secret")
    monkeypatch.setenv("LOOM_CALENDAR_NAME_2", "Radicale")
    monkeypatch.setenv("LOOM_CALENDAR_EMAIL_2", OWNER)
    bootstrap = loom_env["bootstrap"]

    invoke("fetch", "calendar")
    first = topic_messages(bootstrap)
    keys = sorted(key for key, _ in first)
    day = f"{tomorrow:%Y%m%d}"
    assert keys == sorted([
        f"standup/{day}T090000Z", f"standup/{(tomorrow + timedelta(days=7)):%Y%m%d}T090000Z",
        f"standup/{(tomorrow + timedelta(days=14)):%Y%m%d}T090000Z", f"partner-review/{day}T140000Z",
        f"offsite/{(now + timedelta(days=3)):%Y%m%d}", f"retro/{_stamp(now - timedelta(days=2))}",
        "garbled/unreadable"])  # the declined pitch is not published
    envelope = dict(first)[f"partner-review/{day}T140000Z"]
    assert envelope["device_id"] == "calendar-fetcher-work" and envelope["timestamp"].startswith(
        f"{tomorrow:%Y-%m-%d}T14:00:00")

    invoke("fetch", "calendar")
    assert len(topic_messages(bootstrap)) == len(first)  # nothing changed, nothing published

    # Loom v2's own fetcher shape lands too; one with an unparseable start becomes an error.
    produce(bootstrap, [
        (TOPIC, loom_v2_message(tomorrow + timedelta(hours=2), event_id="v2-board", summary="Board review")),
        (TOPIC, loom_v2_message(tomorrow, event_id="v2-broken", summary="Broken", start_time="2026-13-45T25:00:00")),
    ], key=b"v2")
    invoke("process", "--through-now", "--flow", "calendar")
    url = loom_env["database_url"]

    raw = table(url, "calendar_raw")
    # Every fetched occurrence but the garbled one, plus Loom v2's good message.
    assert sorted(raw["event_id"]) == sorted([k for k in keys if k != "garbled/unreadable"] + ["v2-board"])
    events = table(url, "calendar_events", order="start_time").set_index("event_id")
    assert len(events) == len(raw)
    standup = events.loc[f"standup/{day}T090000Z"]
    assert (standup.meeting_type, standup.attendee_count, standup.duration_category, standup.recurrence_pattern,
            standup.time_of_day) == ("team", 3, "short", "weekly", "morning")
    review = events.loc[f"partner-review/{day}T140000Z"]
    assert (review.meeting_type, review.duration_category, review.time_of_day) == ("external", "long", "afternoon")
    assert (review.place_name, review.place_country_code) == ("Berlin", "DE")
    assert review.latitude == pytest.approx(52.52, abs=0.05)
    offsite = events.loc[f"offsite/{(now + timedelta(days=3)):%Y%m%d}"]
    assert offsite.all_day and offsite.duration_category == "all_day" and offsite.calendar_name == "Team"
    retro = events.loc[f"retro/{_stamp(now - timedelta(days=2))}"]
    assert retro.duration_minutes == 60.0 and pd.isna(retro.latitude)
    assert retro.online_meeting_url == "https://meet.google.com/abc-defg-hij"
    board = events.loc["v2-board"]
    assert (board.title, board.meeting_type, board.attendee_count, board.place_name) == (
        "Board review", "team", 3, "Hamburg")

    errors = table(url, "processing_errors", order="source_offset")
    assert errors[["flow", "error_type"]].values.tolist() == [["calendar", "validation_error"]] * 2
    originals = [bytes(v).decode() for v in errors["original_value"]]
    assert any("2026-13-45 nonsense" in v and "BEGIN:VEVENT" in v for v in originals)  # the feed's ICS kept
    assert any("2026-13-45T25:00:00" in v for v in originals)

    vectors = table(url, "calendar_embeddings", order="recorded_at")
    assert set(vectors["source_id"]) == set(events.index)
    dims = table(url, "(SELECT DISTINCT vector_dims(embedding) AS dims FROM calendar_embeddings) d", order="dims")
    assert dims["dims"].tolist() == [384]
    review_text = vectors.set_index("source_id").loc[f"partner-review/{day}T140000Z", "body"]
    assert "Location: Meeting room 2, Berlin" in review_text and "dana@acme.example" in review_text

    # A new event: the next fetch publishes it alone.
    before = topic_messages(bootstrap)
    work.save_event(vcalendar(vevent("one-on-one", tomorrow + timedelta(hours=7), "1:1 Alice / Bob",
                                     f"ORGANIZER:mailto:{OWNER}", "ATTENDEE:mailto:bob@example.com")))
    invoke("fetch", "calendar")
    after = topic_messages(bootstrap)
    new = [(key, value) for key, value in after if (key, value) not in before]
    assert len(after) == len(before) + 1 and [key for key, _ in new] == [f"one-on-one/{day}T160000Z"]
    assert new[0][1]["data"]["title"] == "1:1 Alice / Bob"


def error_topic_headers(bootstrap: str, topic: str) -> list[dict[str, bytes]]:
    """The headers of every message on `topic`, read from the beginning."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "calendar-errors-test",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    found, deadline = [], time.monotonic() + 15
    while time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and not message.error():
            found.append(dict(message.headers() or []))
        elif found:
            break
    consumer.close()
    return found


def test_a_failing_fetch_leaves_no_secret_in_logs_metadata_or_error_rows(loom_env, ics_server, monkeypatch, capfd):
    from dagster import DagsterEventType, DagsterInstance, RetryPolicy, job, serialize_value

    from loom_assets import definitions
    from loom_assets.flows.calendar import FLOW
    from loom_assets.run_logs import RUN_LOG_CONFIG, console_logger

    key, token, password = "0123456789abcdef0123456789abcdef", "t0kenS3cretX", "pa55w0rdS3cretY"
    signature = "s1gnatureS3cretZ"  # in a record's schema_version, which its error message quotes
    www, base = ics_server
    (www / "team.ics").write_text(vcalendar(vevent("planning", datetime.now(UTC) + timedelta(days=1), "Planning")))
    # A private address that answers 404, one where nobody answers (urllib3 then quotes only the
    # path), and one that works with a password in it.
    monkeypatch.setenv("LOOM_ICAL_URL_1", f"{base}/calendar/ical/alice/private-{key}/basic.ics?token={token}")
    monkeypatch.setenv("LOOM_CALENDAR_NAME_1", "Private")
    monkeypatch.setenv("LOOM_ICAL_URL_2", f"http://127.0.0.1:{free_port()}/basic.ics?token={token}")
    monkeypatch.setenv("LOOM_CALENDAR_NAME_2", "Gone")
    monkeypatch.setenv("LOOM_ICAL_URL_3", base.replace("http://", f"http://alice:{password}@") + "/team.ics")
    monkeypatch.setenv("LOOM_CALENDAR_NAME_3", "Team")
    bootstrap, url = loom_env["bootstrap"], loom_env["database_url"]

    # The fetch op of `loom fetch calendar`, with Loom's run logger, without its 5-minute pauses
    # between tries.
    fetch_op = definitions.defs.resolve_job_def("calendar_fetch").graph.node_defs[0]

    @job(logger_defs={"console": console_logger}, config=RUN_LOG_CONFIG)
    def calendar_fetch_once():
        fetch_op.with_retry_policy(RetryPolicy(max_retries=0))()

    instance = DagsterInstance.get()
    fetched = calendar_fetch_once.execute_in_process(instance=instance, resources=definitions.resources(),
                                                     raise_on_error=False)
    assert not fetched.success
    failure = next(e for e in fetched.all_events if e.event_type == DagsterEventType.STEP_FAILURE)
    failed = failure.step_failure_data.user_failure_data.metadata["failed"].value
    assert sorted(failed) == ["Gone", "Private"]
    assert "HTTPError: 404" in failed["Private"] and "/private-…/basic.ics?…" in failed["Private"]
    assert "ConnectionError" in failed["Gone"] and "/basic.ics?…" in failed["Gone"]

    produce(bootstrap, [(TOPIC, json.dumps({
        "schema_version": f"https://calendar.example.com/v?signature={signature}", "device_id": "calendar-fetcher-x",
        "timestamp": datetime.now(UTC).isoformat(), "data": {"event_id": "x", "start_time": "2026-01-01T00:00:00Z"},
    }).encode())], key=b"v2")
    output = invoke("process", "--through-now", "--flow", "calendar")
    printed = output + "".join(capfd.readouterr())

    events = "".join(serialize_value(entry) for run in instance.get_runs() for entry in instance.all_logs(run.run_id))
    landed = instance.get_latest_materialization_event(FLOW.key("raw"))
    metadata = serialize_value(landed.asset_materialization.metadata)
    errors = table(url, "processing_errors")
    assert errors["error_type"].tolist() == ["invalid_schema_version"]
    error = errors.iloc[0]
    assert "https://calendar.example.com/v?…" in error["error_message"]
    assert signature.encode() in bytes(error["original_value"])  # the original is kept as received
    headers = error_topic_headers(bootstrap, FLOW.error_topic)
    assert len(headers) == 1 and headers[0]["loom.error.message"].decode() == error["error_message"]

    assert "Planning" in table(url, "calendar_raw")["title"].tolist()  # the working account landed
    logged = "".join(entry.user_message for run in instance.get_runs() for entry in instance.all_logs(run.run_id))
    assert "/private-…/basic.ics?…" in logged
    assert json.dumps("/private-…/basic.ics?…")[1:-1] in printed  # as the JSON lines escape it
    error_rows = errors.drop(columns=["original_value"]).astype(str).to_string()
    for secret in (key, token, password, signature):
        assert secret not in events, secret
        assert secret not in printed, secret
        assert secret not in metadata, secret
        assert secret not in error_rows, secret
        assert secret.encode() not in b"".join(v for h in headers for v in h.values()), secret
    for secret in (key, token, password):
        assert secret.encode() not in bytes(error["original_value"]), secret
