"""The timeline of one day: one lane per kind of thing Loom knows, read from the stage tables.

Every query reads the `_latest` views (each window's newest version), bounds its time column to
the day so that the tables' time indexes are used, and aggregates in SQL: per-second streams
(activities, the acoustic environment, Wi-Fi) become spans of one value, never rows for the
browser. A lane is a query and a function that turns its rows into timeline items.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg.rows import dict_row

from loom_assets.windows import PARTITION_FMT

Row = Mapping[str, Any]


@dataclass(frozen=True)
class Day:
    """A local day as a UTC span, the devices asked for (none: all) and where Dagster is."""

    start: datetime
    end: datetime
    devices: tuple[str, ...] = ()
    dagster_url: str = "http://localhost:3000"

    def params(self, **more) -> dict:
        # Spans that start before the day (a visit since last night) are found by looking back.
        return {"start": self.start, "end": self.end, "devices": list(self.devices),
                "lookback": self.start - timedelta(days=1), **more}

    def window_url(self, asset: str, window_start: datetime | None) -> str | None:
        """The Dagster page of the window that wrote a row: its lineage back to Kafka."""
        if window_start is None:
            return None
        partition = window_start.astimezone(UTC).strftime(PARTITION_FMT)
        return f"{self.dagster_url.rstrip('/')}/assets/{quote(asset)}?partition={quote(partition, safe=':-')}"


def devices_clause(day: Day, column: str = "device_id") -> str:
    return f" AND {column} = ANY(%(devices)s)" if day.devices else ""


@dataclass(frozen=True)
class Lane:
    name: str
    label: str
    sql: str  # `{devices}` is replaced by the device filter
    item: Callable[[Row, Day], dict]
    tidy: Callable[[list[dict]], list[dict]] | None = None  # rows → rows, before they become items

    def items(self, conn: psycopg.Connection, day: Day) -> list[dict]:
        rows = conn.cursor(row_factory=dict_row).execute(
            self.sql.replace("{devices}", devices_clause(day)), day.params()).fetchall()
        if self.tidy is not None:
            rows = self.tidy(rows)
        return [{"id": f"{self.name}:{n}", "group": self.name, **self.item(row, day)} for n, row in enumerate(rows)]


def merge_brief(spans: Sequence[dict], brief: timedelta = timedelta(minutes=3)) -> list[dict]:
    """Spans (device_id, value, start, end, minutes, window_start) with each brief one that sits
    between two spans of the same value, end to end, merged into them: a car stopped at a light
    is still driving, a quiet minute in a café is still the café. Time covered is unchanged."""
    merged: list[dict] = []
    for span in sorted(spans, key=lambda s: (s["device_id"], s["start"])):
        if len(merged) >= 2:
            before, middle = merged[-2], merged[-1]
            if (before["device_id"] == middle["device_id"] == span["device_id"] and before["value"] == span["value"]
                    and middle["end"] - middle["start"] < brief
                    and before["end"] == middle["start"] and middle["end"] == span["start"]):
                merged.pop()
                merged[-1] = {**before, "end": span["end"],
                              "minutes": round((span["end"] - before["start"]).total_seconds() / 60),
                              "window_start": min(before["window_start"], span["window_start"])}
                continue
        merged.append(dict(span))
    return sorted(merged, key=lambda s: s["start"])


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def _item(kind: str, row: Row, day: Day, asset: str, content: str, *, start: str = "start",
          end: str | None = "end", details: Mapping[str, Any] | None = None, **extra) -> dict:
    return {"start": _iso(row[start]), "end": _iso(row[end]) if end else None,
            "type": "range" if end else "point", "content": content, "className": f"{kind} {extra.pop('css', '')}".strip(),
            "device": row["device_id"], "details": dict(details or {}),
            "link": day.window_url(asset, row.get("window_start")), **extra}


def _one_line(text: str | None, limit: int = 80) -> str:
    line = next((s.strip() for s in (text or "").splitlines() if s.strip()), "")
    return line if len(line) <= limit else line[:limit - 1].rstrip() + "…"


# A stream of one value per few seconds becomes spans: the value of each bucket (a minute: its
# most frequent value), then runs of buckets with the same value; a gap longer than `gap` ends a
# span. `buckets` is a query of (device_id, bucket, value, window_start).
_ISLANDS = """
WITH buckets AS ({buckets}), marked AS (
    SELECT *, CASE WHEN value IS DISTINCT FROM lag(value) OVER w
                     OR bucket - lag(bucket) OVER w > interval '{gap}' THEN 1 ELSE 0 END AS starts
    FROM buckets WINDOW w AS (PARTITION BY device_id ORDER BY bucket)
), numbered AS (
    SELECT *, sum(starts) OVER (PARTITION BY device_id ORDER BY bucket) AS span FROM marked
)
SELECT device_id, value, min(bucket) AS start, max(bucket) + interval '{size}' AS "end",
       (extract(epoch FROM max(bucket) + interval '{size}' - min(bucket)) / 60)::int AS minutes,
       min(window_start) AS window_start
FROM numbered GROUP BY device_id, span, value
"""


def spans_sql(table: str, value: str, *, time: str = "recorded_at", where: str = "", gap: str = "3 minutes") -> str:
    buckets = f"""
        SELECT device_id, date_trunc('minute', {time}) AS bucket, mode() WITHIN GROUP (ORDER BY {value}) AS value,
               min(window_start) AS window_start
        FROM {table} WHERE {time} >= %(start)s AND {time} < %(end)s {where} {{devices}}
        GROUP BY device_id, date_trunc('minute', {time})"""
    return _ISLANDS.format(buckets=buckets, gap=gap, size="1 minute") + " ORDER BY start"


# Apps: a person switches apps every few seconds, so the lane shows what each device was mostly
# used for: the category with the most foreground time in each 5 minutes, as spans, with the
# span's top apps. A session is the row that closed it (docs/flows/app_lifecycle.md#foreground-sessions).
APP_SESSIONS_SQL = """
    SELECT DISTINCT ON (device_id, session_id) device_id, session_id, session_start, session_end, app_category,
           coalesce(app_name, app_identifier) AS app, foreground_seconds, window_start
    FROM app_lifecycle_enriched_latest
    WHERE recorded_at >= %(start)s AND recorded_at < %(end)s + interval '12 hours'
      AND session_end IS NOT NULL AND session_start < %(end)s AND session_end > %(start)s {devices}
    ORDER BY device_id, session_id, recorded_at"""
_DOMINANT_CATEGORY = """
    SELECT DISTINCT ON (device_id, bucket) device_id, bucket, app_category AS value, window_start
    FROM (SELECT device_id, bucket, app_category, sum(seconds) AS seconds, min(window_start) AS window_start
          FROM slices GROUP BY device_id, bucket, app_category) c
    ORDER BY device_id, bucket, seconds DESC"""
APPS_SQL = f"""
WITH sessions AS ({APP_SESSIONS_SQL}), slices AS (
    SELECT s.device_id, b AS bucket, s.app_category, s.app, s.window_start,
           extract(epoch FROM least(s.session_end, b + interval '5 minutes') - greatest(s.session_start, b)) AS seconds
    FROM sessions s,
         generate_series(date_bin('5 minutes', greatest(s.session_start, %(start)s), %(start)s),
                         least(s.session_end, %(end)s), interval '5 minutes') b
), spans AS ({_ISLANDS.format(gap="5 minutes", size="5 minutes", buckets=_DOMINANT_CATEGORY)}), top AS MATERIALIZED (
    SELECT spans.device_id, spans.start, slices.app, sum(slices.seconds) AS seconds
    FROM spans JOIN slices ON slices.device_id = spans.device_id AND slices.app_category = spans.value
                          AND slices.bucket >= spans.start AND slices.bucket < spans."end"
    GROUP BY spans.device_id, spans.start, slices.app
)
SELECT spans.*, (SELECT string_agg(app, ', ' ORDER BY seconds DESC) FROM (
           SELECT app, seconds FROM top WHERE top.device_id = spans.device_id AND top.start = spans.start
           ORDER BY seconds DESC LIMIT 3) best) AS apps
FROM spans ORDER BY start
"""


# Screens: a run of screenshots with the same heading (the OCR text's first line: a window's
# title) is one item, from its first shot to the next different one; the first shot is its thumbnail.
SCREENS_SQL = """
WITH shots AS (
    SELECT device_id, recorded_at, source_partition, source_offset, word_count, left(text, 600) AS text, window_start,
           btrim(split_part(btrim(text, E' \\n\\t'), E'\\n', 1)) AS heading
    FROM screenshot_ocr_text_latest WHERE recorded_at >= %(start)s AND recorded_at < %(end)s {devices}
), marked AS (
    SELECT *, lead(recorded_at) OVER w AS next_at,
           CASE WHEN heading IS DISTINCT FROM lag(heading) OVER w
                  OR recorded_at - lag(recorded_at) OVER w > interval '15 minutes' THEN 1 ELSE 0 END AS starts
    FROM shots WINDOW w AS (PARTITION BY device_id ORDER BY recorded_at)
), numbered AS (
    SELECT *, sum(starts) OVER (PARTITION BY device_id ORDER BY recorded_at) AS run FROM marked
)
SELECT DISTINCT ON (device_id, run) device_id, heading, recorded_at AS start, source_partition, source_offset,
       text, word_count, window_start, count(*) OVER r AS shots,
       max(least(coalesce(next_at, recorded_at + interval '1 minute'), recorded_at + interval '15 minutes')) OVER r
           AS "end"
FROM numbered WINDOW r AS (PARTITION BY device_id, run)
ORDER BY device_id, run, recorded_at
"""


LANES: Sequence[Lane] = (
    Lane("activities", "Activities",
         spans_sql("motion_activities_latest", "activity", where="AND activity <> 'unknown'"),
         lambda r, d: _item("activity", r, d, "motion/activities", r["value"], css=r["value"],
                            details={"activity": r["value"], "minutes": r["minutes"]}), merge_brief),
    Lane("places", "Places",
         """SELECT DISTINCT ON (device_id, visit_id) device_id, visit_id, arrived_at AS start, departed_at AS "end",
                   place_name, place_source, place_category, address, duration_seconds, visit_count_30d,
                   latitude, longitude, window_start
            FROM location_places_latest
            WHERE recorded_at >= %(lookback)s AND recorded_at < %(end)s + interval '1 day'
              AND arrived_at < %(end)s AND departed_at >= %(start)s {devices}
            ORDER BY device_id, visit_id, window_start DESC""",
         lambda r, d: _item("visit", r, d, "location/places", r["place_name"] or r["address"] or "a place",
                            details={"place": r["place_name"], "source": r["place_source"],
                                     "category": r["place_category"], "address": r["address"],
                                     "minutes": round(r["duration_seconds"] / 60),
                                     "visits in 30 days": r["visit_count_30d"]},
                            lat=r["latitude"], lon=r["longitude"])),
    Lane("regions", "Georegions",
         """SELECT device_id, recorded_at AS start, event_type, region_name, region_type, dwell_time_seconds,
                   window_start
            FROM location_georegions_latest
            WHERE recorded_at >= %(start)s AND recorded_at < %(end)s AND event_type IN ('enter', 'exit') {devices}
            ORDER BY recorded_at""",
         lambda r, d: _item("region", r, d, "location/georegions", f"{r['event_type']} {r['region_name']}", end=None,
                            css=r["event_type"], details={"region": r["region_name"], "type": r["region_type"],
                                                          "event": r["event_type"]})),
    Lane("apps", "Apps", APPS_SQL,
         lambda r, d: _item("app", r, d, "app_lifecycle/enriched", f"{r['value']} · {r['apps']}", css=_css(r["value"]),
                            details={"category": r["value"], "apps": r["apps"], "minutes": r["minutes"]})),
    Lane("screens", "Screen text", SCREENS_SQL,
         lambda r, d: _item("screen", r, d, "screenshot_ocr/text", _one_line(r["heading"], 60) or "(no text)",
                            details={"text": r["text"], "words": r["word_count"], "screenshots": r["shots"]},
                            thumb=f"thumb/screenshot/{r['source_partition']}/{r['source_offset']}")),
    Lane("photos", "Photos",
         """SELECT p.device_id, p.recorded_at AS start, p.width, p.height, p.brightness, p.is_blurred, p.window_start,
                   (SELECT string_agg(DISTINCT o.label, ', ') FROM camera_vision_objects_latest o
                     WHERE o.device_id = p.device_id AND o.recorded_at = p.recorded_at) AS objects,
                   (SELECT count(*) FROM camera_vision_faces_latest f
                     WHERE f.device_id = p.device_id AND f.recorded_at = p.recorded_at) AS faces
            FROM camera_vision_preprocessed_latest p
            WHERE p.recorded_at >= %(start)s AND p.recorded_at < %(end)s AND p.error_type IS NULL {devices}
            ORDER BY p.recorded_at""",
         lambda r, d: _item("photo", r, d, "camera_vision/preprocessed", r["objects"] or "photo", end=None,
                            details={"objects": r["objects"], "faces": r["faces"], "size": f"{r['width']}×{r['height']}",
                                     "blurred": r["is_blurred"]},
                            thumb=f"thumb/photo/{quote(r['device_id'])}/{_iso(r['start'])}")),
    Lane("speech", "Speech",
         """SELECT t.device_id, s.start_time AS start, s.end_time AS "end", t.text, t.segment_id, t.language,
                   t.word_count, t.transcriber, t.window_start
            FROM audio_transcripts_latest t JOIN audio_voice_segments_latest s USING (device_id, segment_id)
            WHERE t.recorded_at >= %(start)s AND t.recorded_at < %(end)s
              AND s.recorded_at >= %(lookback)s AND s.recorded_at < %(end)s + interval '1 day' {devices}
            ORDER BY s.start_time""",
         # A point with its words: a few seconds of speech would be too narrow a range to read.
         lambda r, d: _item("speech", r, d, "audio/transcripts", _one_line(r["text"], 60), end=None,
                            details={"transcript": r["text"], "seconds": round((r["end"] - r["start"]).total_seconds(), 1),
                                     "words": r["word_count"], "language": r["language"],
                                     "transcriber": r["transcriber"]})),
    Lane("environment", "Sound",
         spans_sql("audio_environment_latest", "environment", where="AND environment <> 'unknown'"),
         lambda r, d: _item("environment", r, d, "audio/environment", r["value"], css=r["value"],
                            details={"environment": r["value"], "minutes": r["minutes"]}), merge_brief),
    Lane("calendar", "Calendar",
         """SELECT DISTINCT ON (device_id, event_id) device_id, event_id, start_time AS start, end_time AS "end",
                   title, location, place_name, attendee_count, meeting_type, status, window_start
            FROM calendar_events_latest
            WHERE start_time >= %(start)s - interval '7 days' AND start_time < %(end)s AND end_time > %(start)s {devices}
            ORDER BY device_id, event_id, window_start DESC, source_partition DESC, source_offset DESC""",
         lambda r, d: _item("event", r, d, "calendar/events", r["title"] or "(no title)",
                            details={"title": r["title"], "where": r["place_name"] or r["location"],
                                     "attendees": r["attendee_count"], "meeting": r["meeting_type"],
                                     "status": r["status"]})),
    Lane("email", "Email",
         """SELECT device_id, recorded_at AS start, subject, from_name, from_address, folder, left(body_text, 400) AS body,
                   window_start
            FROM email_messages_latest WHERE recorded_at >= %(start)s AND recorded_at < %(end)s {devices}
            ORDER BY recorded_at""",
         lambda r, d: _item("email", r, d, "email/messages", r["subject"] or "(no subject)", end=None,
                            details={"from": r["from_name"] or r["from_address"], "subject": r["subject"],
                                     "folder": r["folder"], "text": r["body"]})),
    Lane("hackernews", "Hacker News",
         """SELECT device_id, recorded_at AS start, title, url, hn_url, interaction_type, score, window_start
            FROM hackernews_items_latest WHERE recorded_at >= %(start)s AND recorded_at < %(end)s {devices}
            ORDER BY recorded_at""",
         lambda r, d: _item("hn", r, d, "hackernews/items", r["title"] or "(untitled)", end=None,
                            details={"title": r["title"], "url": r["url"], "discussion": r["hn_url"],
                                     "interaction": r["interaction_type"], "score": r["score"]})),
    Lane("power", "Charging",
         """SELECT device_id, charging_session_id, min(charging_session_start) AS start, max(recorded_at) AS "end",
                   min(battery_level) AS from_level, max(battery_level) AS to_level,
                   mode() WITHIN GROUP (ORDER BY power_source_normalised) AS source, min(window_start) AS window_start
            FROM power_state_enriched_latest
            WHERE recorded_at >= %(start)s AND recorded_at < %(end)s AND charging_session_id IS NOT NULL {devices}
            GROUP BY device_id, charging_session_id ORDER BY start""",
         lambda r, d: _item("charging", r, d, "power_state/enriched", "charging",
                            details={"from %": _pct(r["from_level"]), "to %": _pct(r["to_level"]),
                                     "source": r["source"]})),
    Lane("wifi", "Wi-Fi",
         spans_sql("network_events_enriched_latest", "coalesce(ssid, '?') || ' · ' || network_category",
                   where="AND connected", gap="5 minutes"),
         lambda r, d: _item("wifi", r, d, "network_events/enriched", r["value"],
                            details={"network": r["value"], "minutes": r["minutes"]})),
)


def _css(value: str | None) -> str:
    return "".join(c if c.isalnum() else "-" for c in (value or "unknown").lower())


def _pct(level: float | None) -> float | None:
    # Battery levels are fractions (0–1) in the tables (docs/flows/power_state.md#message-fields).
    return None if level is None else round(level * 100 if level <= 1 else level)


def timeline(conn: psycopg.Connection, day: Day) -> dict:
    """Every lane's items of the day, and the lanes (groups) in their order."""
    items: list[dict] = []
    for lane in LANES:
        items.extend(lane.items(conn, day))
    return {"groups": [{"id": lane.name, "content": lane.label} for lane in LANES], "items": items}
