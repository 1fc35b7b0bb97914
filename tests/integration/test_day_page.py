"""The day page over a replayed demo afternoon (the coffee walk and visit, back to work, the drive
home), through every demo flow and `loom process`: its API holds what the demo person lived, and
the page, in Debian's Chromium driven by Playwright, draws it (tests/integration/browser.py)."""

import time
from datetime import UTC, date, datetime, timedelta
from urllib.request import urlopen

import orjson
import pytest
from confluent_kafka import Producer
from dagster import DagsterInstance

from loom_assets import day as day_page
from loom_assets import definitions, demo
from loom_assets.ports import free_port
from loom_assets.processing import process_backlog
from tests.conftest import prepare_loom_env
from tests.integration.browser import open_page
from tests.integration.test_spine import invoke

pytestmark = pytest.mark.integration

# The afternoon lived is the one planned for this Tuesday, at yesterday's timestamps (within the
# tables' retention), whatever day the test runs (tests/integration/test_demo_day.py).
PLAN_DATE = date(2026, 11, 24)
TZ = "America/Los_Angeles"  # the demo person's (demo.LOCAL_TZ)


@pytest.fixture(scope="module")
def lived(kafka_broker, postgres, tmp_path_factory):
    """The demo afternoon, landed and processed, and the day page serving it."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        env = prepare_loom_env(postgres, kafka_broker.bootstrap_servers, monkeypatch, tmp_path_factory.mktemp("day"))
        day = (datetime.now(UTC) - timedelta(days=1)).astimezone(demo.LOCAL_TZ).date()
        noon = datetime(day.year, day.month, day.day, 12, tzinfo=demo.LOCAL_TZ)
        plan = demo.DayPlan(0, 0, noon, noon + timedelta(hours=12), PLAN_DATE)
        coffee_walk = next(s for s in plan.segments if s.activity == "walk" and s.start > noon)
        drive_home = next(s for s in plan.segments if s.activity == "drive" and s.start > noon)
        start = coffee_walk.start - timedelta(minutes=15)
        minutes = (drive_home.end - start).total_seconds() / 60 + 10
        for name, region_type, place, radius_m in demo.DEMO_REGIONS:
            invoke("regions", "add", name, "--type", region_type, "--lat", str(place.lat), "--lon", str(place.lon),
                   "--radius", str(radius_m))
        producer = Producer({"bootstrap.servers": env["bootstrap"], "linger.ms": 50})
        messages = demo.demo_messages(start, minutes, devices=2, plan_date=PLAN_DATE)
        demo.replay(producer, messages, speed=None, event_timestamps=True, progress=False)
        # As `loom dev`'s first start processes its catch-up: ranged runs, not one per window.
        assert process_backlog(DagsterInstance.get(), definitions.FLOWS, datetime.now(UTC))

        server = day_page.server(env["database_url"], port=free_port(), dagster_url="http://dagster.test",
                                 tile_url="")
        day_page.serve_in_background(server)
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.started, "the day page did not start"
        yield {**env, "base": f"http://127.0.0.1:{server.config.port}", "day": day, "plan": plan,
               "coffee": plan.at(coffee_walk.end + timedelta(minutes=5)), "drive": drive_home}
        server.should_exit = True


def api(lived, path: str, **params) -> dict:
    query = "&".join(f"{k}={v}" for k, v in {"date": lived["day"].isoformat(), "tz": TZ, **params}.items())
    with urlopen(f"{lived['base']}/api/{path}?{query}", timeout=60) as response:
        return orjson.loads(response.read())


def lane(timeline: dict, name: str) -> list[dict]:
    return [item for item in timeline["items"] if item["group"] == name]


def at(item: dict, key: str = "start") -> datetime:
    return datetime.fromisoformat(item[key])


def test_every_record_of_the_afternoon_became_rows_without_errors(lived):
    import psycopg

    with psycopg.connect(lived["database_url"]) as conn:
        def count(statement: str) -> int:
            return conn.execute(statement).fetchone()[0]

        assert count("SELECT count(*) FROM processing_errors") == 0
        # Every screenshot read, every photo looked at; the coffee shop's reading among the texts.
        assert count("SELECT count(*) FROM screenshot_ocr_raw") >= 30
        assert count("SELECT count(*) FROM screenshot_ocr_text") == count("SELECT count(*) FROM screenshot_ocr_raw")
        assert count("SELECT count(*) FROM screenshot_ocr_text WHERE text ILIKE '%index%'") > 0
        assert count("SELECT count(*) FROM camera_vision_raw") >= 1
        assert count("SELECT count(*) FROM camera_vision_preprocessed") == count("SELECT count(*) FROM camera_vision_raw")
        assert count("SELECT count(*) FROM camera_vision_objects") >= 1


def test_each_lane_holds_what_the_demo_person_lived(lived):
    timeline = api(lived, "timeline")
    coffee, drive = lived["coffee"], lived["drive"]

    # The coffee visit, between two visits at Work, named by its address.
    visits = lane(timeline, "places")
    assert [v["content"] for v in visits][:3] == ["Work", visits[1]["content"], "Work"]
    assert visits[1]["details"]["source"] == "geocoded"
    assert abs(at(visits[1]) - coffee.start) < timedelta(minutes=3)
    assert abs(at(visits[1], "end") - coffee.end) < timedelta(minutes=3)

    # The drive home: a vehicle span covering most of it.
    vehicle = [a for a in lane(timeline, "activities") if a["content"] == "vehicle"]
    covered = sum(max(timedelta(0), min(at(a, "end"), drive.end) - max(at(a), drive.start)).total_seconds()
                  for a in vehicle)
    assert covered >= 0.7 * (drive.end - drive.start).total_seconds()

    # The standup (the calendar of the day, published as the replay began) and what was said at the
    # coffee shop (the demo's espeak-ng speech, through VAD and speech-to-text).
    standup = [e for e in lane(timeline, "calendar") if e["content"] == "Daily standup"]
    assert len(standup) == 1 and at(standup[0]).astimezone(demo.LOCAL_TZ).strftime("%H:%M") == "09:30"
    said = [s for s in lane(timeline, "speech") if "oat milk" in s["details"]["transcript"].lower()]
    assert said and coffee.start <= at(said[0]) <= coffee.end

    # Screens: the laptop's screenshots, headed by their window's title.
    headings = {item["content"] for item in lane(timeline, "screens")}
    titles = {title for screens in demo.SCREENS.values() for title, _ in screens}
    assert headings & titles, headings

    # Apps by category, charging, Wi-Fi, georegion events: present, inside the day.
    for name in ("apps", "regions", "wifi"):
        items = lane(timeline, name)
        assert items, name
        assert all(lived["day"].isoformat() <= at(i).astimezone(demo.LOCAL_TZ).date().isoformat() for i in items)
    assert {"enter", "exit"} <= {i["details"]["event"] for i in lane(timeline, "regions")}
    # Every item links to the Dagster page of the window that wrote it.
    assert all(i["link"].startswith("http://dagster.test/assets/") and "?partition=" in i["link"]
               for i in timeline["items"])


def test_the_map_and_plots_are_aggregated_in_sql(lived):
    track = api(lived, "map")
    (phone_path,) = track["paths"].values()  # only the phone has GPS
    # One fix a minute at most, not the raw 30 s fixes, in time order.
    times = [datetime.fromisoformat(p[2]) for p in phone_path]
    minutes = [t.replace(second=0, microsecond=0) for t in times]
    assert len(times) > 100 and minutes == sorted(set(minutes))
    assert {v["name"] for v in track["visits"]} >= {"Work"}

    plots = api(lived, "plots")
    assert len(plots["battery"]) == 2 and all(0 <= level <= 100 for points in plots["battery"].values()
                                              for _, level in points)
    assert sum(steps for _, steps in plots["steps_per_hour"]) > 500  # the coffee walk alone
    assert plots["places"][0][0] == "Work"
    assert plots["app_categories"] and all(minutes > 0 for _, minutes in plots["app_categories"])


def test_a_device_filter_keeps_only_that_devices_rows(lived):
    devices = api(lived, "devices")["devices"]
    assert len(devices) == 2
    phone, laptop = sorted(devices, key=lambda d: d != demo.demo_devices(2, 0)[0].device_id)
    laptop_day = api(lived, "timeline", device=laptop)
    assert {i["device"] for i in laptop_day["items"]} == {laptop}
    assert not lane(laptop_day, "activities") and lane(laptop_day, "screens")


@pytest.mark.parametrize("query, message", [
    ("tz=Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
    ("date=yesterday", "date 'yesterday': give YYYY-MM-DD"),
])
def test_bad_parameters_get_a_clear_error(lived, query, message):
    from urllib.error import HTTPError

    with pytest.raises(HTTPError) as error:
        urlopen(f"{lived['base']}/api/timeline?{query}", timeout=30)
    assert error.value.code == 400
    assert orjson.loads(error.value.read()) == {"error": message}


def test_the_page_draws_every_lane_and_the_track(lived):
    with open_page(f"{lived['base']}/?date={lived['day'].isoformat()}", timezone=TZ) as page:
        for kind in ("activity", "visit", "app", "screen", "photo", "speech", "event", "charging", "wifi"):
            assert page.locator(f".vis-item.{kind}").count() > 0, kind
        assert page.locator(".vis-item.visit", has_text="Work").count() >= 2
        assert page.locator(".vis-item.event", has_text="Daily standup").count() == 1
        assert page.locator(".vis-item.speech", has_text="oat milk").count() >= 1
        assert page.locator(".vis-item.screen img").count() > 0  # thumbnails
        assert page.locator("path.track").count() == 1 and page.locator("path.visit").count() >= 2
        # An item opens its details, with the link to its window in Dagster.
        page.locator(".vis-item.visit").first.click()
        assert page.locator("#details").is_visible()
        assert page.locator("#details-link").get_attribute("href").startswith("http://dagster.test/assets/location/")


def test_a_search_hit_moves_the_timeline_to_its_moment(lived):
    with open_page(f"{lived['base']}/?date={lived['day'].isoformat()}", timezone=TZ) as page:
        page.fill("#query", "rollback plan for the archive bucket")
        page.press("#query", "Enter")
        hit = page.locator("#hits li.hit").first
        hit.wait_for(timeout=60_000)
        assert "screenshot_ocr" in hit.inner_text()
        hit.click()
        page.wait_for_function("document.body.dataset.focus !== undefined")
        moment = datetime.fromisoformat(page.evaluate("document.body.dataset.focus").replace("Z", "+00:00"))
        window = page.evaluate("(() => { const w = loomDay.timeline.getWindow();"
                               " return [w.start.toISOString(), w.end.toISOString()]; })()")
        start, end = (datetime.fromisoformat(t.replace("Z", "+00:00")) for t in window)
        assert start < moment < end and end - start <= timedelta(hours=2)
        # The screen it names is selected, and its details are open.
        assert page.locator(".vis-item.screen.vis-selected").count() == 1
        assert "storage migration" in page.locator("#details-title").inner_text()


def test_search_is_scoped_to_the_day_or_to_all_time(lived):
    day_hits = api(lived, "search", q="storage+migration")["hits"]
    assert "screenshot_ocr" in {h["flow"] for h in day_hits}
    assert {at(h, "recorded_at").astimezone(demo.LOCAL_TZ).date() for h in day_hits} == {lived["day"]}
    before = (lived["day"] - timedelta(days=2)).isoformat()
    assert api(lived, "search", q="storage+migration", date=before)["hits"] == []
    assert api(lived, "search", q="storage+migration", date=before, scope="all")["hits"]


def test_photo_thumbnails_blur_the_faces_the_vision_flow_found(lived):
    import io

    import numpy as np
    import psycopg
    from PIL import Image, ImageOps
    from scipy import ndimage

    from loom_assets.resources.blobs import BlobStore

    with psycopg.connect(lived["database_url"]) as conn:
        device, recorded_at, x, y, w, h, uri = conn.execute(
            "SELECT f.device_id, f.recorded_at, f.x, f.y, f.w, f.h, r.image_data_uri FROM camera_vision_faces f"
            " JOIN camera_vision_raw r USING (device_id, recorded_at) ORDER BY f.recorded_at LIMIT 1").fetchone()
    with urlopen(f"{lived['base']}/thumb/photo/{device}/{recorded_at.isoformat()}", timeout=60) as response:
        assert response.headers["Content-Type"] == "image/jpeg"
        thumb = Image.open(io.BytesIO(response.read())).convert("L")
    original = ImageOps.exif_transpose(Image.open(io.BytesIO(BlobStore().get(uri)))).convert("L")
    assert thumb.width == 320
    scale = thumb.width / original.width
    unblurred = original.resize(thumb.size, Image.Resampling.LANCZOS)

    def sharpness(image):  # variance of the Laplacian inside the face box
        box = np.asarray(image, dtype=float)[round(y * scale):round((y + h) * scale), round(x * scale):round((x + w) * scale)]
        return ndimage.laplace(box).var()

    assert sharpness(thumb) < 0.2 * sharpness(unblurred)
