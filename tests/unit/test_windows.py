"""Windows, partitions and offset planning (pure functions)."""

from datetime import UTC, datetime, timedelta

import pytest

from hypothesis import given
from hypothesis import strategies as st

from loom_assets.sensors.kafka_windows import MAX_RETRY_DELAY, retry_delay
from loom_assets.windows import (
    OffsetRange,
    cron_for,
    offset_gaps,
    partition_key,
    partitions_start,
    plan_hash,
    plan_ranges,
    window_at_or_after,
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


def test_a_record_stamped_far_ahead_does_not_stall_planning():
    """Kafka answers every lookup before a far-future record with that record's offset (9): the
    window that reaches it takes the partition up to the high watermark instead of stalling."""
    [r] = plan_ranges({TP: 9}, {TP: 0}, {TP: 20}, {TP: 9}, stamped_ahead={TP: 9})
    assert (r.start, r.end) == (9, 20)
    # Before the record is reached, the lookup is trusted as always.
    [r] = plan_ranges({TP: 2}, {TP: 0}, {TP: 20}, {TP: 6}, stamped_ahead={TP: 9})
    assert (r.start, r.end) == (2, 6)
    # No record stamped ahead: an empty window is just a quiet one.
    [r] = plan_ranges({TP: 9}, {TP: 0}, {TP: 20}, {TP: 9}, stamped_ahead={TP: None})
    assert (r.start, r.end) == (9, 9)


@pytest.mark.parametrize(("previous", "low", "high", "reason", "start"), [
    (5, 8, 20, "expired", 8),       # retention deleted offsets 5..7 before they were planned
    (50, 0, 20, "topic_reset", 0),  # the topic was recreated: its offsets start again
])
def test_offsets_kafka_no_longer_holds_are_a_gap_and_planning_goes_on(previous, low, high, reason, start):
    assert offset_gaps({TP: previous}, {TP: low}, {TP: high}) == [(*TP, previous, low, reason)]
    [r] = plan_ranges({TP: previous}, {TP: low}, {TP: high}, {TP: None})
    assert (r.start, r.end) == (start, high)


def test_no_gap_while_the_previous_end_is_held():
    assert offset_gaps({TP: 8}, {TP: 8}, {TP: 8}) == offset_gaps({TP: 8}, {TP: 0}, {TP: 20}) == []


@given(previous=st.integers(0, 10**6), low=st.integers(0, 10**6), extra=st.integers(0, 10**6),
       lookup=st.none() | st.integers(0, 3 * 10**6), ahead=st.none() | st.integers(0, 3 * 10**6))
def test_a_plan_always_starts_at_the_previous_end_or_at_a_recorded_gap(previous, low, extra, lookup, ahead):
    """Whatever the broker answers: every offset Kafka holds after the previous end is in this
    range or a later one, and any start other than the previous end is explained by a gap."""
    high = low + extra
    [r] = plan_ranges({TP: previous}, {TP: low}, {TP: high}, {TP: lookup}, stamped_ahead={TP: ahead})
    assert low <= r.start <= r.end <= high
    gaps = offset_gaps({TP: previous}, {TP: low}, {TP: high})
    if r.start != previous:
        assert gaps == [(*TP, previous, r.start, "expired" if previous < low else "topic_reset")]
    else:
        assert gaps == []


def test_after_a_window_size_change_the_next_window_starts_on_the_new_grid():
    end_of_5_minute_window = datetime(2026, 11, 24, 6, 10, tzinfo=UTC)
    assert window_at_or_after(end_of_5_minute_window, timedelta(minutes=15)) == datetime(2026, 11, 24, 6, 15, tzinfo=UTC)
    assert window_at_or_after(end_of_5_minute_window, timedelta(minutes=5)) == end_of_5_minute_window


def test_a_failed_window_is_asked_for_again_sooner_then_later_but_at_least_hourly():
    delays = [retry_delay(n) for n in range(1, 12)]
    assert delays[0] == timedelta(minutes=1) and delays == sorted(delays)
    assert delays[-1] == MAX_RETRY_DELAY


def test_a_raw_backfill_lands_a_few_windows_per_run():
    """So a backfill of a month never holds a month of records in one run's memory."""
    from loom_assets import definitions
    from loom_assets.flows.base import RAW_WINDOWS_PER_RUN

    assert {flow.raw.backfill_policy.max_partitions_per_run for flow in definitions.FLOWS} == {RAW_WINDOWS_PER_RUN}
