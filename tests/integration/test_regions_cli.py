"""`loom regions add|list|remove` against a real migrated PostgreSQL."""

import json

import pytest
from click.testing import CliRunner

from loom_assets.cli import main
from loom_assets.regions import RegionError, polygon_ring, ring_bounds
from loom_assets.stages.location import haversine_m

pytestmark = pytest.mark.integration

# docs/flows/location.md#georegions, migration 033: the Nashville Home polygon.
NASHVILLE_RING = [[-86.685127, 36.046366], [-86.682296, 36.047976], [-86.683277, 36.048782],
                  [-86.686243, 36.047234], [-86.685127, 36.046366]]


def run(*args: str):
    return CliRunner().invoke(main, ["regions", *args], catch_exceptions=False)


def test_add_list_and_remove_circles_and_polygons(loom_env, tmp_path):
    added = run("add", "Work", "--type", "work", "--lat", "37.7955", "--lon", "-122.3937", "--radius", "150")
    assert added.exit_code == 0, added.output
    polygon_file = tmp_path / "home.geojson"
    polygon_file.write_text(json.dumps({"type": "Feature", "properties": {},
                                        "geometry": {"type": "Polygon", "coordinates": [NASHVILLE_RING]}}))
    assert run("add", "Home", "--type", "home", "--polygon", str(polygon_file)).exit_code == 0

    listed = json.loads(run("list", "--json").output)
    by_name = {r["name"]: r for r in listed}
    assert by_name["Work"]["geometry_type"] == "circle" and by_name["Work"]["radius_meters"] == 150
    home = by_name["Home"]
    assert home["geometry_type"] == "polygon" and home["type"] == "home"
    assert home["polygon_coordinates"]["coordinates"][0] == NASHVILLE_RING
    # Centre inside the ring's bounding box; radius reaches the farthest vertex (~200 m here).
    assert 36.0463 < home["center_latitude"] < 36.0488 and 150 < home["radius_meters"] < 300

    duplicate = run("add", "Work", "--lat", "1", "--lon", "1")
    assert duplicate.exit_code == 1 and "--replace" in duplicate.output
    assert run("add", "Work", "--lat", "37.8", "--lon", "-122.4", "--radius", "80", "--replace").exit_code == 0
    assert {r["name"]: r["radius_meters"] for r in json.loads(run("list", "--json").output)}["Work"] == 80

    assert run("remove", "Work").exit_code == 0
    assert [r["name"] for r in json.loads(run("list", "--json").output)] == ["Home"]
    missing = run("remove", "Work")
    assert missing.exit_code == 1 and "no region named 'Work'" in missing.output


@pytest.mark.parametrize("args, message", [
    (("--lat", "95", "--lon", "0"), "is not a latitude/longitude"),
    (("--lat", "1", "--lon", "1", "--radius", "0"), "must be positive"),
    (("--polygon", "[[0, 0], [1, 1]]"), "at least 3 distinct points"),
    (("--polygon", '{"type": "Point", "coordinates": [0, 0]}'), "expected a GeoJSON Polygon"),
    (("--polygon", "not json"), "neither GeoJSON nor a file"),
    (("--lon", "1"), "needs --lat, --lon"),
])
def test_bad_regions_are_refused_with_a_clear_message(loom_env, args, message):
    result = run("add", "Bad", *args)
    assert result.exit_code == 1
    assert message in result.output


def test_rings_are_closed_and_bounded():
    ring = polygon_ring(json.dumps(NASHVILLE_RING[:-1]))  # unclosed input
    assert ring[0] == ring[-1] and len(ring) == 5
    lat, lon, radius = ring_bounds(ring)
    assert radius == pytest.approx(max(haversine_m(lat, lon, p[1], p[0]) for p in ring), rel=1e-9)
    with pytest.raises(RegionError):
        polygon_ring('{"type": "FeatureCollection", "features": []}')
