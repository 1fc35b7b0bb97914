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
