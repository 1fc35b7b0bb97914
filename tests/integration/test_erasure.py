"""`loom erase --device`: the device's rows go from every table, the blobs only it held go from
the store, another device's rows and shared blobs stay, and re-running its windows from Kafka
does not bring anything back."""

import json
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
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
    own_uri = table(url, f"screenshot_ocr_raw WHERE image_data_uri LIKE '%.jpg'")["image_data_uri"].iloc[0]
    assert store.exists(own_uri)

    output = invoke("erase", "--device", DEVICE, "--yes")
    assert f"erased {sum(before.values())} rows and 1 blobs" in output

    assert device_rows(url, DEVICE) == {}
    assert device_rows(url, OTHER) == other_before
    assert not store.exists(own_uri)
    [shared_uri] = table(url, "screenshot_ocr_raw")["image_data_uri"]
    assert store.get(shared_uri) == shared  # the other device's identical screenshot keeps it

    # Kafka still holds the device's messages: re-running its windows lands none of them.
    from loom_assets import definitions
    from loom_assets.windows import partition_key

    for flow in ("app_lifecycle", "screenshot_ocr"):
        job = definitions.defs.resolve_job_def(definitions.flow_named(flow).job.name)
        with psycopg.connect(url) as conn:
            windows = [w for (w,) in conn.execute("SELECT DISTINCT window_start FROM loom_offset_log"
                                                  " WHERE flow = %s AND end_offset > start_offset", (flow,))]
        for window in windows:
            assert job.execute_in_process(partition_key=partition_key(window), instance=DagsterInstance.get()).success
    assert device_rows(url, DEVICE) == {}
    assert device_rows(url, OTHER) == other_before
    assert not store.exists(own_uri)
