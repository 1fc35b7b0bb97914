"""`loom day`: a read-only web page of one day over everything Loom knows (docs/day.md).

A small Starlette app. The page (static/) asks for the day's timeline, map and plots in parallel
and draws them with libraries vendored into the package (vis-timeline, Leaflet, ECharts), so it
works with no internet. Every request opens a read-only connection: the page can never write.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
import psycopg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from loom_assets.day import lanes, media, summary
from loom_assets.day.lanes import Day

STATIC = Path(__file__).parent / "static"
CONNECT_TIMEOUT_S = 5
DEFAULT_TILE_URL = ""  # no tiles unless given: the page works offline
DEVICES_SQL = """
SELECT device_id FROM (
    SELECT DISTINCT device_id FROM app_lifecycle_raw WHERE recorded_at >= %(start)s AND recorded_at < %(end)s
    UNION SELECT DISTINCT device_id FROM location_raw WHERE recorded_at >= %(start)s AND recorded_at < %(end)s
    UNION SELECT DISTINCT device_id FROM power_state_raw WHERE recorded_at >= %(start)s AND recorded_at < %(end)s
) devices ORDER BY device_id
"""


class JSON(JSONResponse):
    def render(self, content) -> bytes:
        return orjson.dumps(content, default=str)  # datetimes, decimals


class BadRequest(ValueError):
    """A parameter the page cannot use; answered 400 with its message."""


def day_of(request: Request, dagster_url: str) -> tuple[Day, str]:
    """The day asked for: `date` (default today) in `tz` (the browser's), `device` (repeated; none: all)."""
    tz_name = request.query_params.get("tz") or "UTC"
    try:
        tz = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadRequest(f"unknown time zone {tz_name!r}") from None
    value = request.query_params.get("date")
    try:
        day = date.fromisoformat(value) if value else datetime.now(tz).date()
    except ValueError:
        raise BadRequest(f"date {value!r}: give YYYY-MM-DD") from None
    start = datetime.combine(day, time(0), tz)
    end = datetime.combine(day + timedelta(days=1), time(0), tz)  # 23 or 25 hours on a DST change
    devices = tuple(d for d in request.query_params.getlist("device") if d)
    return Day(start.astimezone(UTC), end.astimezone(UTC), devices, dagster_url), tz_name


def create_app(database_url: str, *, dagster_url: str = "http://localhost:3000", tile_url: str = DEFAULT_TILE_URL,
               embedder: Callable | None = None) -> Starlette:
    """The day page over `database_url`. `tile_url`: a map tile URL template, or "" for none
    (the track and visits still draw, on a plain background)."""

    def connect() -> psycopg.Connection:
        return psycopg.connect(database_url, connect_timeout=CONNECT_TIMEOUT_S,
                               options="-c default_transaction_read_only=on")

    def api(answer: Callable[[psycopg.Connection | None, Day, str, Request], object], database: bool = True):
        """An endpoint answering for the day asked; `database`: with a read-only connection."""
        def endpoint(request: Request) -> Response:
            try:
                day, tz = day_of(request, dagster_url)
                if not database:
                    return JSON(answer(None, day, tz, request))
                with connect() as conn:
                    return JSON(answer(conn, day, tz, request))
            except BadRequest as error:
                return JSON({"error": str(error)}, status_code=400)
            except psycopg.OperationalError as error:
                return JSON({"error": f"the database is not reachable: {error}".strip()}, status_code=503)
        return endpoint

    @cache
    def search_model():
        if embedder is not None:
            return embedder()
        from loom_assets.resources.models import Models

        return Models().embedder()

    def search(conn, day: Day, tz: str, request: Request):
        from loom_assets.search import SearchError, hybrid_search

        query = request.query_params.get("q", "")
        whole_day = request.query_params.get("scope", "day") == "day"
        try:
            hits = hybrid_search(database_url, query, search_model, since=day.start if whole_day else None,
                                 until=day.end if whole_day else None, limit=20, ui_url=dagster_url)
        except SearchError as error:
            raise BadRequest(str(error)) from None
        return {"hits": [hit.as_json() for hit in hits]}

    def thumbnail(make: Callable[[psycopg.Connection, Request], bytes]):
        def endpoint(request: Request) -> Response:
            try:
                with connect() as conn:
                    image = make(conn, request)
            except (media.NoMedia, ValueError) as error:
                return JSON({"error": str(error)}, status_code=404)
            # What a Kafka position holds never changes (an erased one is gone: 404).
            return Response(image, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"})
        return endpoint

    page = (STATIC / "index.html").read_text(encoding="utf-8")
    config = json.dumps({"tileUrl": tile_url, "dagsterUrl": dagster_url})

    def index(request: Request) -> Response:
        return HTMLResponse(page.replace("{{config}}", config.replace("</", "<\\/")))

    routes = [
        Route("/", index),
        Route("/api/devices", api(lambda conn, day, tz, request: {
            "devices": [r[0] for r in conn.execute(DEVICES_SQL, day.params())]})),
        Route("/api/timeline", api(lambda conn, day, tz, request: lanes.timeline(conn, day))),
        Route("/api/map", api(lambda conn, day, tz, request: summary.track(conn, day))),
        Route("/api/plots", api(lambda conn, day, tz, request: summary.plots(conn, day, tz))),
        Route("/api/search", api(search, database=False)),  # hybrid_search opens its own
        Route("/thumb/screenshot/{partition:int}/{offset:int}", thumbnail(
            lambda conn, r: media.screenshot_thumbnail(conn, r.path_params["partition"], r.path_params["offset"]))),
        Route("/thumb/photo/{device}/{at}", thumbnail(
            lambda conn, r: media.photo_thumbnail(conn, r.path_params["device"],
                                                  datetime.fromisoformat(r.path_params["at"])))),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(routes=routes)
