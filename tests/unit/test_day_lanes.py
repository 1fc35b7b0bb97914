"""The day page's lane logic that runs in Python: brief spans between two of the same value merge
into them, and nothing else changes (the SQL side is tested on a demo day in
tests/integration/test_day_page.py)."""

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from loom_assets.day.lanes import merge_brief

T0 = datetime(2026, 11, 24, 9, tzinfo=UTC)
BRIEF = timedelta(minutes=3)


def spans_of(pieces, device="phone"):
    """Contiguous spans of (value, minutes) pieces, from T0 (gaps where value is None)."""
    spans, t = [], T0
    for value, minutes in pieces:
        end = t + timedelta(minutes=minutes)
        if value is not None:
            spans.append({"device_id": device, "value": value, "start": t, "end": end, "minutes": minutes,
                          "window_start": t})
        t = end
    return spans


def covered(spans):
    return sorted((s["device_id"], s["start"], s["end"]) for s in spans)


def test_a_stop_at_a_light_is_part_of_the_drive():
    spans = spans_of([("walking", 2), ("vehicle", 5), ("still", 2), ("vehicle", 3), ("walking", 2)])
    assert [(s["value"], s["minutes"]) for s in merge_brief(spans)] == [
        ("walking", 2), ("vehicle", 10), ("walking", 2)]


def test_a_long_stop_or_a_gap_is_kept():
    long_stop = spans_of([("vehicle", 5), ("still", 3), ("vehicle", 5)])
    assert len(merge_brief(long_stop)) == 3
    gap = spans_of([("vehicle", 5), (None, 1), ("still", 1), ("vehicle", 5)])
    assert len(merge_brief(gap)) == 3


def test_devices_never_merge_into_each_other():
    phone = spans_of([("vehicle", 5)], "phone")
    watch = spans_of([(None, 5), ("still", 1)], "watch")
    later = spans_of([(None, 6), ("vehicle", 5)], "phone")
    assert len(merge_brief(phone + watch + later)) == 3


values = st.sampled_from(["still", "walking", "vehicle", None])
pieces = st.lists(st.tuples(values, st.integers(1, 6)), max_size=30)


@given(pieces, pieces)
def test_merging_keeps_the_time_covered_and_leaves_no_brief_span_between_twins(phone, watch):
    spans = spans_of(phone, "phone") + spans_of(watch, "watch")
    merged = merge_brief(spans)
    # The same minutes are covered, per device, by the same number or fewer spans.
    def minutes(items, device):
        return sum((s["end"] - s["start"]).total_seconds() for s in items if s["device_id"] == device)
    assert all(minutes(merged, d) == minutes(spans, d) for d in ("phone", "watch"))
    assert len(merged) <= len(spans)
    # Each merged span is a union of input spans, end to end.
    starts = {(s["device_id"], s["start"]) for s in spans}
    ends = {(s["device_id"], s["end"]) for s in spans}
    assert all((s["device_id"], s["start"]) in starts and (s["device_id"], s["end"]) in ends for s in merged)
    # No brief span is left between two contiguous spans of one value.
    for device in ("phone", "watch"):
        mine = [s for s in merged if s["device_id"] == device]
        for a, b, c in zip(mine, mine[1:], mine[2:]):
            assert not (a["value"] == c["value"] and b["end"] - b["start"] < BRIEF
                        and a["end"] == b["start"] and b["end"] == c["start"])
