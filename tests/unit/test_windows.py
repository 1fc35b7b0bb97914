"""Windows, partitions and offset planning (pure functions)."""

from datetime import UTC, datetime, timedelta

import pytest

from loom_assets.windows import (
    OffsetRange,
    cron_for,
    partition_key,
    partitions_start,
    plan_hash,
    plan_ranges,
    window_from_key,
    window_of,
)

TP = ("t", 0)


@pytest.mark.parametrize(("minutes", "cron"), [(5, "*/5 * * * *"), (15, "*/15 * * * *"), (60, "0 */1 * * *"),
                                               (1440, "0 0 * * *"), (1, "* * * * *")])
def test_cron_for_window_sizes(minutes, cron):
    assert cron_for(timedelta(minutes=minutes)) == cron


def test_a_window_that_does_not_divide_an_hour_is_refused():
    with pytest.raises(ValueError):
        cron_for(timedelta(minutes=7))


def test_partitions_start_rolls_forward_with_retention():
    assert partitions_start(datetime(2026, 11, 24, tzinfo=UTC), timedelta(days=30)) == datetime(2026, 10, 1, tzinfo=UTC)
    assert partitions_start(datetime(2026, 12, 24, tzinfo=UTC), timedelta(days=30)) == datetime(2026, 11, 1, tzinfo=UTC)


def test_window_of_and_partition_keys_round_trip():
    start = window_of(datetime(2026, 11, 24, 6, 7, 30, tzinfo=UTC), timedelta(minutes=5))
    assert start == datetime(2026, 11, 24, 6, 5, tzinfo=UTC)
    assert window_from_key(partition_key(start)) == start


def test_first_plan_starts_at_the_low_watermark_and_ends_at_the_time_lookup():
    [r] = plan_ranges({}, {TP: 3}, {TP: 20}, {TP: 12})
    assert (r.start, r.end) == (3, 12)


def test_next_plan_starts_where_the_previous_ended():
    [r] = plan_ranges({TP: 12}, {TP: 3}, {TP: 20}, {TP: None})
    assert (r.start, r.end) == (12, 20)  # nothing that late: up to the high watermark


@pytest.mark.parametrize("lookup", [0, 5])
def test_a_lookup_behind_the_start_means_no_timestamp_index(lookup):
    """Tansu answers 0; a record with a future timestamp can do the same on Kafka."""
    [r] = plan_ranges({TP: 12}, {TP: 0}, {TP: 20}, {TP: lookup})
    assert (r.start, r.end) == (12, 20)


def test_ranges_never_go_backwards_or_past_the_high_watermark():
    [r] = plan_ranges({TP: 12}, {TP: 0}, {TP: 15}, {TP: 30})
    assert (r.start, r.end) == (12, 15)
    [empty] = plan_ranges({TP: 12}, {TP: 0}, {TP: 12}, {TP: None})
    assert empty.count == 0


def test_plan_hash_depends_on_ranges_not_order():
    a, b = OffsetRange("t", 0, 0, 5), OffsetRange("t", 1, 0, 7)
    assert plan_hash([a, b]) == plan_hash([b, a]) != plan_hash([a])
