"""The day at a glance beside the timeline: the map's track and visits, and four small plots.

All of it is aggregated in SQL (one fix per device and minute for the track, ten-minute battery
means, hourly step sums), so the browser gets at most a few thousand numbers for a day.
"""

from __future__ import annotations

import psycopg
from psycopg.rows import dict_row

from loom_assets.day.lanes import Day, devices_clause

TRACK_SQL = """
SELECT DISTINCT ON (device_id, date_trunc('minute', recorded_at))
       device_id, recorded_at, latitude, longitude
FROM location_raw
WHERE recorded_at >= %(start)s AND recorded_at < %(end)s {devices}
ORDER BY device_id, date_trunc('minute', recorded_at), recorded_at
"""

VISITS_SQL = """
SELECT DISTINCT ON (device_id, visit_id) device_id, visit_id, place_name, address, latitude, longitude, radius_m,
       greatest(arrived_at, %(start)s) AS start, least(departed_at, %(end)s) AS "end"
FROM location_places_latest
WHERE recorded_at >= %(lookback)s AND recorded_at < %(end)s + interval '1 day'
  AND arrived_at < %(end)s AND departed_at >= %(start)s {devices}
ORDER BY device_id, visit_id, window_start DESC
"""

BATTERY_SQL = """
SELECT device_id, date_bin('10 minutes', recorded_at, %(start)s) AS at, avg(battery_level) AS level
FROM power_state_enriched_latest
WHERE recorded_at >= %(start)s AND recorded_at < %(end)s AND battery_level IS NOT NULL {devices}
GROUP BY device_id, at ORDER BY device_id, at
"""

APP_CATEGORIES_SQL = """
WITH sessions AS (
    SELECT DISTINCT ON (device_id, session_id) app_category, foreground_seconds
    FROM app_lifecycle_enriched_latest
    WHERE recorded_at >= %(start)s AND recorded_at < %(end)s + interval '1 day'
      AND session_end IS NOT NULL AND session_start >= %(start)s AND session_start < %(end)s {devices}
    ORDER BY device_id, session_id, window_start DESC, recorded_at DESC
)
SELECT app_category AS category, sum(foreground_seconds) / 60 AS minutes FROM sessions
GROUP BY app_category HAVING sum(foreground_seconds) > 0 ORDER BY minutes DESC
"""

STEPS_SQL = """
SELECT date_trunc('hour', recorded_at AT TIME ZONE %(tz)s) AS hour, sum(step_count) AS steps
FROM motion_windows_latest
WHERE recorded_at >= %(start)s AND recorded_at < %(end)s {devices}
GROUP BY hour ORDER BY hour
"""


def _rows(conn: psycopg.Connection, statement: str, day: Day, **params) -> list[dict]:
    return conn.cursor(row_factory=dict_row).execute(
        statement.replace("{devices}", devices_clause(day)), day.params(**params)).fetchall()


def track(conn: psycopg.Connection, day: Day) -> dict:
    """Each device's path (one fix a minute) and the day's visits."""
    paths: dict[str, list] = {}
    for row in _rows(conn, TRACK_SQL, day):
        paths.setdefault(row["device_id"], []).append(
            [round(row["latitude"], 6), round(row["longitude"], 6), row["recorded_at"].isoformat()])
    visits = [{"device": v["device_id"], "name": v["place_name"] or v["address"] or "a place",
               "lat": v["latitude"], "lon": v["longitude"], "radius_m": v["radius_m"],
               "start": v["start"].isoformat(), "end": v["end"].isoformat(),
               "minutes": round((v["end"] - v["start"]).total_seconds() / 60)}
              for v in _rows(conn, VISITS_SQL, day)]
    return {"paths": paths, "visits": visits}


def plots(conn: psycopg.Connection, day: Day, tz: str) -> dict:
    """Battery over the day, minutes per app category, steps per hour, minutes per place."""
    battery: dict[str, list] = {}
    for row in _rows(conn, BATTERY_SQL, day):
        level = row["level"] * 100 if row["level"] <= 1 else row["level"]  # fractions in the tables
        battery.setdefault(row["device_id"], []).append([row["at"].isoformat(), round(level, 1)])
    categories = [[r["category"], round(float(r["minutes"]), 1)] for r in _rows(conn, APP_CATEGORIES_SQL, day)]
    steps = [[r["hour"].strftime("%H:00"), int(r["steps"] or 0)] for r in _rows(conn, STEPS_SQL, day, tz=tz)]
    places: dict[str, float] = {}
    for visit in _rows(conn, VISITS_SQL, day):
        name = visit["place_name"] or visit["address"] or "a place"
        places[name] = places.get(name, 0) + round((visit["end"] - visit["start"]).total_seconds() / 60)
    return {"battery": battery, "app_categories": categories, "steps_per_hour": steps,
            "places": sorted(([name, minutes] for name, minutes in places.items()), key=lambda p: -p[1])}
