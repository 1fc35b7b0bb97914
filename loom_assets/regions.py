"""Georegions: the places you name (home, work, the gym), kept in the `georegions` table.

`loom regions add|list|remove` manages them; the location flow reads the active ones each window.
A circle is a centre and a radius; a polygon is a GeoJSON ring of [lon, lat] points
(docs/flows/location.md#georegions), stored with its centroid and farthest vertex as centre and
radius for quick bounding.
"""

import json
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from loom_assets.geo import haversine_m

REGION_TYPES = ("home", "work", "custom")


class RegionError(ValueError):
    """A region that cannot be stored as given."""


def polygon_ring(text: str) -> list[list[float]]:
    """The outer ring of a polygon given as GeoJSON (Polygon, Feature, FeatureCollection with one
    feature), a bare ring `[[lon, lat], …]`, or a path to a file holding one of those."""
    path = Path(text)
    if not text.lstrip().startswith(("[", "{")) and path.exists():
        text = path.read_text()
    try:
        shape: Any = json.loads(text)
    except json.JSONDecodeError as error:
        raise RegionError(f"polygon is neither GeoJSON nor a file: {error}") from None
    if isinstance(shape, dict) and shape.get("type") == "FeatureCollection":
        features = shape.get("features") or []
        if len(features) != 1:
            raise RegionError(f"a FeatureCollection needs exactly one feature, it has {len(features)}")
        shape = features[0]
    if isinstance(shape, dict) and shape.get("type") == "Feature":
        shape = shape.get("geometry") or {}
    if isinstance(shape, dict):
        if shape.get("type") != "Polygon":
            raise RegionError(f"expected a GeoJSON Polygon, got {shape.get('type')!r}")
        shape = (shape.get("coordinates") or [None])[0]
    try:
        ring = [[float(lon), float(lat)] for lon, lat, *_ in shape]
    except (TypeError, ValueError):
        raise RegionError("a ring is a list of [longitude, latitude] points") from None
    if ring and ring[0] == ring[-1]:
        ring = ring[:-1]
    if len(ring) < 3:
        raise RegionError(f"a polygon needs at least 3 distinct points, it has {len(ring)}")
    for lon, lat in ring:
        if not (-180 <= lon <= 180 and -90 <= lat <= 90):
            raise RegionError(f"point [{lon}, {lat}] is not a [longitude, latitude] pair")
    return [*ring, ring[0]]  # stored closed, as GeoJSON wants


def ring_bounds(ring: list[list[float]]) -> tuple[float, float, float]:
    """(centre latitude, centre longitude, radius m): the vertex centroid and farthest vertex."""
    points = ring[:-1]
    lat = sum(p[1] for p in points) / len(points)
    lon = sum(p[0] for p in points) / len(points)
    radius = max(haversine_m(lat, lon, p[1], p[0]) for p in points)
    return lat, lon, max(radius, 1.0)


def add_region(url: str, name: str, *, region_type: str = "custom", latitude: float | None = None,
               longitude: float | None = None, radius_m: float | None = None, polygon: str | None = None,
               description: str | None = None, replace: bool = False) -> dict:
    """Store a circle (latitude, longitude, radius) or a polygon; `replace` updates a same-named one."""
    if region_type not in REGION_TYPES:
        raise RegionError(f"type must be one of {', '.join(REGION_TYPES)}")
    if polygon is not None:
        if latitude is not None or longitude is not None:
            raise RegionError("give either a polygon or a centre, not both")
        ring = polygon_ring(polygon)
        latitude, longitude, radius_m = ring_bounds(ring)
        geometry = "polygon"
    else:
        if latitude is None or longitude is None or radius_m is None:
            raise RegionError("a circle needs --lat, --lon and --radius")
        if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
            raise RegionError(f"({latitude}, {longitude}) is not a latitude/longitude")
        if radius_m <= 0:
            raise RegionError("the radius must be positive (metres)")
        ring, geometry = None, "circle"
    conflict = (
        "ON CONFLICT (name) DO UPDATE SET description = EXCLUDED.description, type = EXCLUDED.type,"
        " geometry_type = EXCLUDED.geometry_type, center_latitude = EXCLUDED.center_latitude,"
        " center_longitude = EXCLUDED.center_longitude, radius_meters = EXCLUDED.radius_meters,"
        " polygon_coordinates = EXCLUDED.polygon_coordinates, is_active = true, updated_at = now()"
        if replace else ""
    )
    with psycopg.connect(url) as conn:
        try:
            row = conn.execute(
                "INSERT INTO georegions (name, description, type, geometry_type, center_latitude,"
                " center_longitude, radius_meters, polygon_coordinates) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                + conflict + " RETURNING id",
                (name, description, region_type, geometry, latitude, longitude, radius_m,
                 Jsonb({"type": "Polygon", "coordinates": [ring]}) if ring else None),
            ).fetchone()
        except psycopg.errors.UniqueViolation:
            raise RegionError(f"a region named {name!r} exists (use --replace to update it)") from None
    return {"id": row[0], "name": name, "type": region_type, "geometry_type": geometry,
            "center_latitude": latitude, "center_longitude": longitude, "radius_meters": radius_m}


def list_regions(url: str, active_only: bool = False) -> list[dict]:
    """The stored regions as dicts (the polygon as its GeoJSON), oldest first."""
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(
            "SELECT id, name, type, geometry_type, center_latitude, center_longitude, radius_meters,"
            " polygon_coordinates, is_active, description FROM georegions"
            + (" WHERE is_active" if active_only else "") + " ORDER BY id"
        ).fetchall()


def remove_region(url: str, name: str) -> bool:
    """Delete a region. Its past events keep its name; reprocessing windows forgets it."""
    with psycopg.connect(url) as conn:
        return conn.execute("DELETE FROM georegions WHERE name = %s", (name,)).rowcount > 0
