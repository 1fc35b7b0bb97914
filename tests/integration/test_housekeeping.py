"""Daily housekeeping: expired offset-log entries go, but each partition's newest one stays."""

from datetime import UTC, datetime, timedelta

import pytest
from dagster import DagsterInstance

from loom_assets.windows import OffsetRange

pytestmark = pytest.mark.integration


def test_housekeeping_prunes_the_offset_log_but_keeps_where_the_next_window_starts(loom_env):
    from loom_assets import definitions
    from loom_assets.housekeeping import housekeeping_job

    warehouse = definitions.resources()["warehouse"]
    old = datetime(2020, 1, 1, tzinfo=UTC)
    warehouse.record_plans("app_lifecycle", timedelta(minutes=5), [
        (old + i * timedelta(minutes=5), [OffsetRange("os.events.app_lifecycle.raw", 0, i, i + 1)]) for i in range(3)
    ])
    with warehouse.connect() as conn:
        conn.execute("INSERT INTO geocode_cache (provider, provider_version, latitude, longitude, last_used_at)"
                     " VALUES ('offline-geonames', 'v', 1, 1, %s), ('offline-geonames', 'v', 2, 2, now())", (old,))
    result = housekeeping_job.execute_in_process(instance=DagsterInstance.get(), resources=definitions.resources())
    assert result.success
    latest, ends = warehouse.last_planned("app_lifecycle")
    assert latest == old + timedelta(minutes=10)
    assert ends == {("os.events.app_lifecycle.raw", 0): 3}
    with warehouse.connect() as conn:
        assert conn.execute("SELECT count(*) FROM loom_offset_log").fetchone()[0] == 1
        # The address unused for years goes; the one used today stays.
        assert conn.execute("SELECT latitude FROM geocode_cache").fetchall() == [(2.0,)]


def test_housekeeping_sweeps_blobs_no_row_refers_to(loom_env):
    import os
    import time

    from loom_assets import definitions
    from loom_assets.housekeeping import housekeeping_job
    from loom_assets.resources.blobs import BlobStore
    from tests.integration.test_media_landing import b64, image_bytes
    from tests.integration.test_spine import flat, invoke, produce

    produce(loom_env["bootstrap"], [("device.image.camera.raw", flat(datetime.now(UTC), image_data=b64(image_bytes("PNG"))))])
    invoke("process", "--through-now", "--flow", "camera_vision")
    store = BlobStore()
    [referenced] = store.all_uris()
    orphan = store.put(b"left behind by an erased row")
    for uri in (referenced, orphan):  # both older than the grace period
        path = uri.removeprefix("file://")
        os.utime(path, (time.time() - 3 * 86400,) * 2)
    assert housekeeping_job.execute_in_process(instance=DagsterInstance.get(), resources=definitions.resources()).success
    assert store.all_uris() == [referenced]
