"""`loom erase --device`: the device's rows go from every table, the blobs only it held go from
the store, another device's rows and shared blobs stay, and re-running its windows from Kafka
does not bring anything back."""

import json
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pandas as pd
import psycopg
import pytest
from confluent_kafka import Producer
from dagster import DagsterInstance

from loom_assets.erasure import device_tables
from loom_assets.resources.blobs import BlobStore
from tests.integration.test_media_landing import b64, image_bytes
from tests.integration.test_spine import DEVICE, flat, invoke, produce, table

pytestmark = pytest.mark.integration

OTHER = str(uuid.uuid4())


def as_device(message: bytes, device_id: str) -> bytes:
    return json.dumps({**json.loads(message), "device_id": device_id}).encode()


def device_rows(url: str, device_id: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return {t: n for t in device_tables(conn)
                if (n := conn.execute(f"SELECT count(*) FROM {t} WHERE device_id = %s", (device_id,)).fetchone()[0])}


def rerun_windows(url: str, flow: str) -> None:
    """Land every window of `flow` that holds records again, from Kafka, and run its stages."""
    from loom_assets import definitions
    from loom_assets.windows import partition_key

    job = definitions.defs.resolve_job_def(definitions.flow_named(flow).job.name)
    with psycopg.connect(url) as conn:
        windows = [w for (w,) in conn.execute("SELECT DISTINCT window_start FROM loom_offset_log"
                                              " WHERE flow = %s AND end_offset > start_offset", (flow,))]
    assert windows
    for window in windows:
        assert job.execute_in_process(partition_key=partition_key(window), instance=DagsterInstance.get()).success


def test_erasing_a_device_removes_its_rows_and_blobs_for_good(loom_env):
    at = datetime.now(UTC) - timedelta(minutes=1)
    shared, own = image_bytes("PNG"), image_bytes("JPEG")
    app = flat(at, app_identifier="com.slack.Slack", event_type="launch")
    produce(loom_env["bootstrap"], [
        ("device.image.screenshot.raw", flat(at, image_data=b64(shared), format="png", camera_type="screen")),
        ("device.image.screenshot.raw", flat(at + timedelta(seconds=5), image_data=b64(own), format="jpeg")),
        ("device.image.screenshot.raw", as_device(flat(at, image_data=b64(shared), format="png"), OTHER)),
        ("os.events.app_lifecycle.raw", app),
        ("os.events.app_lifecycle.raw", as_device(app, OTHER)),
        ("os.events.app_lifecycle.raw", flat(at, app_identifier="com.slack.Slack", event_type="dance")),  # an error row
    ])
    for flow in ("app_lifecycle", "screenshot_ocr"):
        invoke("process", "--through-now", "--flow", flow)
    url = loom_env["database_url"]
    store = BlobStore()
    before = device_rows(url, DEVICE)
    assert {"app_lifecycle_raw", "app_lifecycle_enriched", "screenshot_ocr_raw", "screenshot_ocr_text",
            "processing_errors"} <= set(before)
    other_before = device_rows(url, OTHER)
    own_uri = table(url, "screenshot_ocr_raw WHERE image_data_uri LIKE '%.jpg'")["image_data_uri"].iloc[0]
    assert store.exists(own_uri)

    output = invoke("erase", "--device", DEVICE, "--yes")

    assert device_rows(url, DEVICE) == {}
    assert device_rows(url, OTHER) == other_before
    assert not store.exists(own_uri)
    assert f"erased {sum(before.values())} rows, 0 cache entries and 1 blobs" in output
    assert f"0 rows of {DEVICE!r} remain" in output
    [shared_uri] = table(url, "screenshot_ocr_raw")["image_data_uri"]
    assert store.get(shared_uri) == shared  # the other device's identical screenshot keeps it

    # Kafka still holds the device's messages: re-running its windows lands none of them.
    for flow in ("app_lifecycle", "screenshot_ocr"):
        rerun_windows(url, flow)
    assert device_rows(url, DEVICE) == {}
    assert device_rows(url, OTHER) == other_before
    assert not store.exists(own_uri)


APP_TOPIC = "os.events.app_lifecycle.raw"


def launch(at: datetime, device_id: str) -> bytes:
    return as_device(flat(at, app_identifier="com.slack.Slack", event_type="launch"), device_id)


def produce_at(bootstrap: str, topic: str, value: bytes, device_id: str, at: datetime) -> None:
    """One record of `device_id`, stamped `at` by Kafka."""
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(topic, value=value, key=device_id.encode(), timestamp=int(at.timestamp() * 1000))
    assert producer.flush(30) == 0


def raw_devices(url: str) -> list[str]:
    return sorted(table(url, "app_lifecycle_raw")["device_id"])


def test_a_record_stamped_a_day_ahead_stays_erased_when_its_window_is_landed_again(loom_env):
    url, gone = loom_env["database_url"], str(uuid.uuid4())
    at = datetime.now(UTC) - timedelta(minutes=1)
    produce(loom_env["bootstrap"], [(APP_TOPIC, launch(at, gone)), (APP_TOPIC, launch(at + timedelta(days=1), gone))],
            key=gone.encode())
    produce(loom_env["bootstrap"], [(APP_TOPIC, launch(at, OTHER))], key=OTHER.encode())
    invoke("process", "--through-now", "--flow", "app_lifecycle")
    assert raw_devices(url) == sorted([gone, gone, OTHER])
    assert "app_lifecycle_enriched" in device_rows(url, gone)
    other_before = device_rows(url, OTHER)
    landed = table(url, "app_lifecycle_raw")
    [partition] = set(landed[landed["device_id"] == gone]["source_partition"])
    high = int((landed["source_partition"] == partition).sum())  # fresh topics: every record landed

    output = invoke("erase", "--device", gone, "--yes")
    assert raw_devices(url) == [OTHER]
    rerun_windows(url, "app_lifecycle")

    assert raw_devices(url) == [OTHER]
    assert device_rows(url, gone) == {}
    assert device_rows(url, OTHER) == other_before
    assert f"{APP_TOPIC}/{partition} below offset {high}" in output and f"0 rows of {gone!r} remain" in output


def test_a_record_the_device_sends_after_its_erase_lands(loom_env):
    url, device = loom_env["database_url"], str(uuid.uuid4())
    # Sent ten minutes ago: its window has closed, so the window in progress is planned later.
    earlier = datetime.now(UTC) - timedelta(minutes=10)
    produce_at(loom_env["bootstrap"], APP_TOPIC, launch(earlier, device), device, earlier)
    invoke("process", "--flow", "app_lifecycle")
    assert raw_devices(url) == [device]
    invoke("erase", "--device", device, "--yes")
    assert raw_devices(url) == []

    produce(loom_env["bootstrap"], [(APP_TOPIC, launch(datetime.now(UTC), device))], key=device.encode())
    invoke("process", "--through-now", "--flow", "app_lifecycle")
    assert raw_devices(url) == [device]
    rerun_windows(url, "app_lifecycle")
    assert raw_devices(url) == [device]


@pytest.mark.parametrize("step", ["raw", "enriched", "enriched by read time alone"])
def test_an_erase_while_a_run_is_between_reading_and_writing_leaves_none_of_the_devices_rows(
        loom_env, monkeypatch, step):
    """The run reads the device's records (raw: from Kafka; enriched: the raw rows), the device
    is erased, then the run writes: the write drops them (a stage's rows by their records'
    positions, and by when the step began reading, which alone must suffice too)."""
    from loom_assets import erasure
    from loom_assets.flows import base
    from loom_assets.stages import app_lifecycle

    url, gone = loom_env["database_url"], str(uuid.uuid4())
    at = datetime.now(UTC) - timedelta(minutes=1)
    produce(loom_env["bootstrap"], [(APP_TOPIC, launch(at, gone)), (APP_TOPIC, launch(at + timedelta(days=1), gone))],
            key=gone.encode())
    produce(loom_env["bootstrap"], [(APP_TOPIC, launch(at, OTHER))], key=OTHER.encode())
    invoke("process", "--through-now", "--flow", "app_lifecycle")
    other_before = device_rows(url, OTHER)
    erased = []

    def erasing_first(computed):
        def step_then_erase(*args, **kwargs):
            result = computed(*args, **kwargs)
            if not erased:  # the run has read what it writes, and has not written it yet
                erased.append(invoke("erase", "--device", gone, "--yes"))
            return result
        return step_then_erase

    if step == "raw":
        monkeypatch.setattr(base, "store_blobs", erasing_first(base.store_blobs))
    else:
        monkeypatch.setattr(app_lifecycle, "enrich", erasing_first(app_lifecycle.enrich))
    if step == "enriched by read time alone":
        monkeypatch.setattr(erasure, "erased_mask", lambda frame, *_: pd.Series(False, index=frame.index))
    rerun_windows(url, "app_lifecycle")

    assert erased
    assert device_rows(url, gone) == {}
    assert device_rows(url, OTHER) == other_before
    assert f"0 rows of {gone!r} remain" in erased[0]


def test_an_erase_waits_for_a_write_in_progress(loom_env):
    """A writer holds the erasure lock shared for its whole transaction: the erase starts once
    it has committed, so it deletes what the writer wrote."""
    from loom_assets.erasure import hold_off_erasure

    url, gone = loom_env["database_url"], str(uuid.uuid4())
    done = threading.Event()
    with psycopg.connect(url) as writer, writer.transaction():
        hold_off_erasure(writer, object())
        eraser = threading.Thread(target=lambda: (invoke("erase", "--device", gone, "--yes"), done.set()))
        eraser.start()
        assert not done.wait(2.0)  # the erase waits for the writer's transaction
    eraser.join(30)
    assert done.is_set()


def test_the_devices_error_rows_go_by_key_and_by_envelope(loom_env):
    url, gone = loom_env["database_url"], str(uuid.uuid4())
    at = datetime.now(UTC) - timedelta(minutes=1)
    content_key = b"\x9f\x02content-hash"
    produce(loom_env["bootstrap"], [(APP_TOPIC, b"not json, keyed by the device")], key=gone.encode())
    produce(loom_env["bootstrap"], [(APP_TOPIC, json.dumps({"device_id": 7, "data": {"device_id": gone}}).encode()),
                                    (APP_TOPIC, launch(at, gone).replace(b'"launch"', b'"dance"'))],
            key=content_key)
    produce(loom_env["bootstrap"], [(APP_TOPIC, b"not json either"), (APP_TOPIC, launch(at, OTHER))],
            key=OTHER.encode())
    invoke("process", "--through-now", "--flow", "app_lifecycle")
    errors = table(url, "processing_errors")
    assert len(errors) == 4 and errors["device_id"].isna().sum() == 3

    output = invoke("erase", "--device", gone, "--yes")
    assert [bytes(v) for v in table(url, "processing_errors")["original_value"]] == [b"not json either"]
    rerun_windows(url, "app_lifecycle")
    assert [bytes(v) for v in table(url, "processing_errors")["original_value"]] == [b"not json either"]
    assert raw_devices(url) == [OTHER]
    assert "error rows (by device, key or envelope)" in output and f"0 rows of {gone!r} remain" in output


def test_the_geocode_cache_entries_the_devices_fixes_used_go(loom_env):
    from loom_assets.resources.geocoder import Address, GeocodeCache, search_key
    from loom_assets.stages.geocoding import GeocodingRules, geocoded

    class Geocoder:
        provider, provider_version = "fake", "1"

        def reverse(self, latitude, longitude):
            return Address(name=f"{latitude:.4f},{longitude:.4f}", provider="fake", provider_version="1")

    url, gone = loom_env["database_url"], str(uuid.uuid4())
    t0 = pd.Timestamp("2026-03-03 10:00", tz="UTC")

    def fixes(device: str, points: list[tuple[float, float]]) -> pd.DataFrame:
        return pd.DataFrame([
            {"window_start": t0, "device_id": device, "recorded_at": t0 + pd.Timedelta(minutes=i), "latitude": lat,
             "longitude": lon, "accuracy": 8.0, "source_topic": "device.sensor.gps.raw", "source_partition": 0,
             "source_offset": i, "message_id": f"m{i}", "trace_id": None}
            for i, (lat, lon) in enumerate(points)])

    cache = GeocodeCache(lambda: psycopg.connect(url), "fake", "1")
    home, office, park = (47.3769, 8.5417), (47.3900, 8.5150), (47.3600, 8.5600)
    geocoded(fixes(OTHER, [office, park]), None, Geocoder(), cache, GeocodingRules())
    geocoded(fixes(gone, [home, office]), None, Geocoder(), cache, GeocodingRules())  # reuses the office entry
    names = lambda: sorted(table(url, "geocode_cache", order="id")["name"])  # noqa: E731
    assert len(names()) == 3
    # Calendar events' place texts, looked up forward (text -> place) and cached by text.
    with psycopg.connect(url) as conn:
        for offset, (device, location) in enumerate([(gone, "Kunsthaus  Zürich, Heimplatz 1"), (OTHER, "Rietberg")]):
            conn.execute(
                "INSERT INTO calendar_raw (window_start, device_id, recorded_at, schema_version, message_id,"
                " source_topic, source_partition, source_offset, ingested_at, event_id, start_time, all_day,"
                " location) VALUES (%s, %s, %s, '1.0', %s, 'calendar.events.raw', 0, %s, %s, %s, %s, false, %s)",
                (t0, device, t0, f"m{offset}", offset, t0, f"e{offset}", t0, location))
            conn.execute("INSERT INTO geocode_search_cache (provider, provider_version, query) VALUES ('fake', '1', %s)",
                         (search_key(location),))

    output = invoke("erase", "--device", gone, "--yes")
    assert names() == ["47.3600,8.5600"]  # the park only the other device asked about
    assert list(table(url, "geocode_search_cache", order="query")["query"]) == ["rietberg"]
    assert "geocode cache entries" in output and f"0 rows of {gone!r} remain" in output


def test_the_erase_fails_when_a_row_of_the_device_is_still_there_afterwards(loom_env, monkeypatch):
    from click.testing import CliRunner

    from loom_assets import erasure
    from loom_assets.cli import main

    counted = {"app_lifecycle_raw": 1, "processing_errors": 0, "geocode_cache": 0}
    monkeypatch.setattr(erasure, "remaining", lambda conn, device_id: counted)
    result = CliRunner().invoke(main, ["erase", "--device", OTHER, "--yes"])
    assert result.exit_code == 1
    assert f"rows of {OTHER!r} remain after the erase: app_lifecycle_raw 1" in result.output
