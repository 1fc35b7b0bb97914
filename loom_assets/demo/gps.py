"""The GPS generator: fixes along the day's plan."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from loom_assets.demo.constants import GPS_INTERVAL_S, GPS_TOPIC
from loom_assets.demo.day import DayPlan
from loom_assets.demo.messages import DemoMessage, rest_message
from loom_assets.demo.people import DemoDevice
from loom_assets.demo.streams import _stream_rng, _ticks
from loom_assets.demo.travel import _offset

# ---- gps -------------------------------------------------------------------------------------

GPS_ACCURACY_M = (5.0, 30.0)  # brief: accuracy 5-30 m
OUTDOOR_ACCURACY_M = (5.0, 12.0)  # open sky


def gps_stream(
    device: DemoDevice, plan: DayPlan, seed: int, start: datetime, end: datetime
) -> Iterator[DemoMessage]:
    """``device.sensor.gps.raw`` (flat, docs/messages.md#payload-fields: latitude, longitude,
    altitude, accuracy, heading, speed) every 30 s (docs/messages.md#sampling-rates). Stationary
    fixes wander within their accuracy."""
    rng = _stream_rng(seed, device, GPS_TOPIC)
    for t in _ticks(rng, start, end, GPS_INTERVAL_S):
        seg = plan.at(t)
        lat, lon, alt, speed, heading = seg.position(t)
        if seg.place is not None:
            accuracy = rng.uniform(*seg.place.accuracy_m)
            speed = abs(rng.gauss(0, 0.15))
        else:
            accuracy = rng.uniform(*OUTDOOR_ACCURACY_M)
            speed = max(0.0, speed + rng.gauss(0, 0.3))
            heading = (heading + rng.gauss(0, 4)) % 360
        accuracy = min(max(accuracy, GPS_ACCURACY_M[0]), GPS_ACCURACY_M[1])
        lat, lon = _offset(lat, lon, rng.gauss(0, accuracy / 2), rng.gauss(0, accuracy / 2))
        payload = {
            "latitude": round(lat, 7),
            "longitude": round(lon, 7),
            "altitude": round(alt + rng.gauss(0, 3), 1),
            "accuracy": round(accuracy, 1),
            "heading": round(heading, 1) if speed >= 0.5 else 0.0,  # no bearing when still
            "speed": round(speed, 2),
        }
        yield rest_message(GPS_TOPIC, device.device_id, t, payload, rng)
