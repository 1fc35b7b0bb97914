"""Geometry on the sphere: great-circle distances, polygon rings and points in them."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

EARTH_RADIUS_M = 6_371_000.0  # docs/flows/location.md#georegions
# Points within 1 cm of a polygon edge are "on" it (floating-point noise; GPS is metres at best).
EDGE_TOLERANCE_M = 0.01
_M_PER_DEG = EARTH_RADIUS_M * math.pi / 180.0


# -- geometry ---------------------------------------------------------------------------------------
def haversine_m(lat1: Any, lon1: Any, lat2: Any, lon2: Any) -> Any:
    """Great-circle distance in metres (R = 6 371 000 m, docs/flows/location.md#georegions); scalars
    give a float, arrays (broadcast) give an array."""
    phi1, lam1, phi2, lam2 = (np.radians(np.asarray(v, dtype=float)) for v in (lat1, lon1, lat2, lon2))
    a = np.sin((phi2 - phi1) / 2) ** 2 + np.cos(phi1) * np.cos(phi2) * np.sin((lam2 - lam1) / 2) ** 2
    distance = 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))
    return float(distance) if np.ndim(distance) == 0 else distance


def closed_ring(ring: Iterable) -> np.ndarray:
    """A GeoJSON ring of [lon, lat] points as an (m, 2) array, closed (last point = first).

    Accepts an unclosed ring (it is closed here). Raises ValueError for fewer than 3 distinct
    points."""
    points = np.asarray([(float(p[0]), float(p[1])) for p in ring], dtype=float).reshape(-1, 2)
    if len(np.unique(points, axis=0)) < 3:
        raise ValueError(f"a polygon ring needs at least 3 distinct points, got {points.tolist()}")
    if not np.array_equal(points[0], points[-1]):
        points = np.vstack([points, points[:1]])
    return points


def edge_distance_m(lat: Any, lon: Any, ring: Iterable) -> Any:
    """Distance in metres from each point to the nearest edge of the ring (0 on an edge).

    Each point projects the ring into its own local equirectangular plane (x east, y north,
    metres, centred on the point): accurate to well under 1 % at region scale (kilometres)."""
    ring = closed_ring(ring)
    lat_a, lon_a = np.atleast_1d(np.asarray(lat, dtype=float)), np.atleast_1d(np.asarray(lon, dtype=float))
    scale_x = (np.cos(np.radians(lat_a)) * _M_PER_DEG)[:, None]
    xs = (ring[:, 0][None, :] - lon_a[:, None]) * scale_x          # (n, m)
    ys = (ring[:, 1][None, :] - lat_a[:, None]) * _M_PER_DEG
    ax, ay, bx, by = xs[:, :-1], ys[:, :-1], xs[:, 1:], ys[:, 1:]
    dx, dy = bx - ax, by - ay
    length2 = dx * dx + dy * dy
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(length2 > 0, -(ax * dx + ay * dy) / length2, 0.0)
    t = np.clip(t, 0.0, 1.0)
    distance = np.hypot(ax + t * dx, ay + t * dy).min(axis=1)
    return float(distance[0]) if np.ndim(lat) == 0 and np.ndim(lon) == 0 else distance


def point_in_polygon(lat: Any, lon: Any, ring: Iterable) -> Any:
    """Whether the point(s) lie inside a GeoJSON ring of [lon, lat] points
    (docs/flows/location.md#georegions).

    Ray casting (even-odd rule) with a half-open test on latitude, so a ray through a vertex is
    counted once. A point on an edge or vertex (within EDGE_TOLERANCE_M) counts as INSIDE, like
    PostGIS ST_Intersects/ST_Covers (ST_Contains would say no): a fix on a region's boundary is at
    it. Concave rings work; unclosed rings are closed; holes are the caller's to drop (only
    `coordinates[0]` is used); rings crossing the antimeridian are out of scope. Scalars give a
    bool, arrays an array.
    """
    closed = closed_ring(ring)
    lat_a, lon_a = np.atleast_1d(np.asarray(lat, dtype=float)), np.atleast_1d(np.asarray(lon, dtype=float))
    y, x = lat_a[:, None], lon_a[:, None]
    x1, y1, x2, y2 = closed[:-1, 0], closed[:-1, 1], closed[1:, 0], closed[1:, 1]
    straddles = (y1 > y) != (y2 > y)                               # half-open: [min, max)
    with np.errstate(invalid="ignore", divide="ignore"):
        x_cross = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
    crossings = (straddles & (x < x_cross)).sum(axis=1)
    inside = (crossings % 2 == 1) | (edge_distance_m(lat_a, lon_a, closed) <= EDGE_TOLERANCE_M)
    return bool(inside[0]) if np.ndim(lat) == 0 and np.ndim(lon) == 0 else inside


def polygon_ring(coordinates: Any) -> tuple[tuple[float, float], ...] | None:
    """The outer ring of `georegions.polygon_coordinates`: a GeoJSON Polygon (dict or JSON text),
    its list of rings, or a bare ring. Holes (rings after the first) are ignored. None when empty."""
    if coordinates is None or (isinstance(coordinates, float) and math.isnan(coordinates)):
        return None
    if isinstance(coordinates, str):
        coordinates = json.loads(coordinates)
    if isinstance(coordinates, Mapping):
        coordinates = coordinates.get("coordinates")
    if not coordinates:
        return None
    first = coordinates[0]
    if len(first) and isinstance(first[0], (list, tuple)):   # a list of rings
        coordinates = first
    return tuple((float(p[0]), float(p[1])) for p in coordinates)
