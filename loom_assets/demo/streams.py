"""What every topic generator shares: a random stream per device and topic, and timer ticks."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timedelta

from loom_assets.demo.constants import TIMER_JITTER_S
from loom_assets.demo.people import DemoDevice

# --------------------------------------------------------------------------------------------
# Topic generators. Each yields DemoMessages of one device, ordered by event time.
# --------------------------------------------------------------------------------------------


def _stream_rng(seed: int, device: DemoDevice, topic: str) -> random.Random:
    return random.Random(f"loom-demo:{seed}:{device.index}:{topic}")


def _ticks(rng: random.Random, start: datetime, end: datetime, interval_s: float) -> Iterator[datetime]:
    """Periodic client timer with a random phase and a little jitter."""
    t = start + timedelta(seconds=rng.uniform(0, interval_s))
    while t < end:
        yield t
        t += timedelta(seconds=interval_s + rng.uniform(*TIMER_JITTER_S))
