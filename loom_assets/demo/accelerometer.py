"""The accelerometer generator: a phone's motion through the day, sampled on a 50 Hz grid."""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from loom_assets.demo.bouts import _Bout, _Drive, _Gait, _Handling, _Rest
from loom_assets.demo.constants import ACCELEROMETER_TOPIC, RECEIVE_LATENCY_MS
from loom_assets.demo.day import DayPlan, Segment
from loom_assets.demo.messages import DemoMessage, _flat_message
from loom_assets.demo.motion import (
    _ACCEL_BLOCK,
    _ACCEL_STEP_US,
    _EPOCH,
    _STILL_EVERY,
    ACCEL_BIAS,
    ACCEL_NOISE,
    CADENCE_HZ,
    HANDLINGS_PER_H,
    P_SHAKE,
    POCKET_SWING_RAD,
    STEP_VERTICAL,
    WALK_GATE_MPS,
    _placement,
    _resting_place,
)
from loom_assets.demo.people import WORK, DemoDevice
from loom_assets.demo.streams import _stream_rng


def _us(dt: datetime) -> int:
    return (dt - _EPOCH) // timedelta(microseconds=1)


class _PhoneMotion:
    """The bouts of one phone's day (a plan of its person) and its samples per UTC minute."""

    def __init__(self, device: DemoDevice, plan: DayPlan, seed: int):
        self.device, self.plan, self.seed = device, plan, seed
        rng = _stream_rng(seed, device, ACCELEROMETER_TOPIC)
        self.noise_key = rng.getrandbits(64)
        self.noise = rng.uniform(*ACCEL_NOISE)
        self.bias = np.array([rng.gauss(0, ACCEL_BIAS) for _ in range(3)])
        person = random.Random(f"loom-demo-gait:{seed}:{device.person}")
        self.cadence = person.uniform(*CADENCE_HZ)
        self.step_vertical = person.uniform(*STEP_VERTICAL)
        self.segments = plan.segments
        self._starts = [_us(s.start) for s in self.segments]
        self._bouts: dict[int, list[_Bout]] = {}  # first segment index of a stay/trip -> bouts
        self._travel: dict[int, _Bout] = {}

    def _rng(self, seg: Segment, what: str) -> random.Random:
        return random.Random(f"loom-demo:{self.seed}:{self.device.index}:{ACCELEROMETER_TOPIC}:"
                             f"{what}:{seg.start.isoformat()}")

    def _hand(self, seg: Segment) -> np.ndarray:
        """How the phone is held when carried into the stay beginning with ``seg``."""
        return _placement(self._rng(seg, "hand"), "hand")

    def _gait(self, start_us: int, end_us: int, orientation, rng, swing=None, **kw) -> _Gait:
        if swing is None:
            swing = rng.uniform(*POCKET_SWING_RAD)
        return _Gait(start_us, end_us, orientation, rng, self.cadence, self.step_vertical, swing, **kw)

    def travel(self, i: int) -> _Bout:
        """The one bout of trip ``i`` (a walk or a drive), also asked for by the stays around it."""
        if i not in self._travel:
            seg = self.segments[i]
            rng = self._rng(seg, "trip")
            start, end = _us(seg.start), _us(seg.end)
            if seg.activity == "drive":
                self._travel[i] = _Drive(start, end, seg, rng)
            else:
                pocket = rng.random() < 0.7  # else in the hand or a bag: hardly any swing
                r = _placement(rng, "pocket" if pocket else "hand")
                speed = np.diff(np.asarray(seg.profile, dtype=float))
                gate_t = np.arange(len(speed)) + 0.5
                gate_v = np.clip(speed / WALK_GATE_MPS, 0.0, 1.0)
                gate_v[-2:] = 1.0  # (no stop at the door: the walk carries on into the stay)

                def gate(s, t=gate_t, g=gate_v):
                    return np.interp(s, t, g)

                swing = rng.uniform(*POCKET_SWING_RAD) if pocket else rng.uniform(0.02, 0.06)
                walk = self._gait(start, end, r, rng, swing=swing, gate=gate, ramp_in=0.5)
                walk.ramp_out = 0.0
                self._travel[i] = walk
        return self._travel[i]

    def _stay(self, i: int) -> tuple[int, int]:
        """First and last segment index of the stay (same activity at the same place) around ``i``."""
        segs = self.segments
        first = last = i
        same = lambda a, b: a.place is b.place and a.activity == b.activity  # noqa: E731
        while first > 0 and same(segs[first - 1], segs[i]):
            first -= 1
        while last + 1 < len(segs) and same(segs[last + 1], segs[i]):
            last += 1
        return first, last

    def bouts(self, i: int) -> tuple[int, list[_Bout]]:
        """(key, bouts) of the trip or stay that segment ``i`` belongs to."""
        if self.segments[i].place is None:  # a trip
            return i, [self.travel(i)]
        first, last = self._stay(i)
        if first not in self._bouts:
            self._bouts[first] = self._stay_bouts(first, last)
        return first, self._bouts[first]

    def _stay_bouts(self, first: int, last: int) -> list[_Bout]:
        """Arrive (out of the car or pocket, maybe a walk or stairs), rest with the odd pick-up,
        leave (pick up; to the car and into its mount, into the pocket, or into the hand)."""
        segs = self.segments
        seg = segs[first]
        prev = segs[first - 1] if first > 0 else None
        nxt = segs[last + 1] if last + 1 < len(segs) else None
        rng = self._rng(seg, "stay")
        start, end = _us(seg.start), _us(segs[last].end)
        sec = 1_000_000
        out: list[_Bout] = []
        t = start
        rest = _resting_place(rng, seg.activity)

        def handle(t0, seconds, before, after, shake=False):
            t1 = t0 + int(seconds * sec)
            out.append(_Handling(t0, t1, before[:, 2], after[:, 2], rng, shake))
            return t1

        def walk(t0, seconds, r, **kw):
            t1 = t0 + int(seconds * sec)
            out.append(self._gait(t0, t1, r, rng, **kw))
            return t1

        # arrival
        if prev is not None and prev.activity == "drive":
            mount, pocket = self.travel(first - 1).r, _placement(rng, "pocket")
            t = handle(t, rng.uniform(3, 5), mount, pocket)
            t = walk(t, rng.uniform(40, 150), pocket)  # from the car park
            t = handle(t, rng.uniform(3, 6), pocket, rest)
        elif prev is not None and prev.activity == "walk":
            trip = self.travel(first - 1)
            assert isinstance(trip, _Gait)
            if seg.place is WORK:  # up the stairs to the office
                t1 = t + int(rng.uniform(15, 30) * sec)
                trip = trip.carried_on(t, t1, stairs=True)
                out.append(trip)
                t = t1
            t1 = t + int(rng.uniform(5, 20) * sec)  # to the desk / the counter
            out.append(trip.carried_on(t, t1))
            t = handle(t1, rng.uniform(3, 6), trip.r, rest)
        else:  # carried in from the last place, in the hand
            t = handle(t, rng.uniform(2, 5), self._hand(seg), rest)
        # departure, planned backwards from the end
        tail: list[tuple[str, float, Any]] = []
        if nxt is not None and nxt.activity == "drive":
            pocket = _placement(rng, "pocket")
            tail = [("handle", rng.uniform(2, 4), pocket), ("walk", rng.uniform(30, 90), pocket),
                    ("handle", rng.uniform(3, 5), self.travel(last + 1).r)]
        elif nxt is not None and nxt.activity == "walk":
            tail = [("handle", rng.uniform(2, 4), self.travel(last + 1).r)]
        else:
            tail = [("handle", rng.uniform(2, 4), self._hand(nxt) if nxt else _placement(rng, "hand"))]
        leave = end - sum(int(seconds * sec) for _, seconds, _ in tail)
        # the stay: rest, now and then picked up (and put back, or somewhere else)
        per_s = HANDLINGS_PER_H[seg.activity] / 3600.0
        while True:
            at = t + int(rng.expovariate(per_s) * sec)
            held = 3.0 + min(rng.lognormvariate(math.log(10.0), 0.8), 90.0)
            if at + int(held * sec) > leave:
                break
            out.append(_Rest(t, at, rest, rng))
            after = rest if rng.random() < 0.5 else _resting_place(rng, seg.activity)
            t = handle(at, held, rest, after, shake=rng.random() < P_SHAKE)
            rest = after
        if leave > t:
            out.append(_Rest(t, leave, rest, rng))
        t = max(t, leave)
        before = rest
        for what, seconds, r in tail:
            if what == "handle":
                t = handle(t, seconds, before, r)
            else:
                t = walk(t, seconds, r)
            before = r
        out[-1].end_us = end  # (integer rounding of the tail)
        return out

    def block(self, b: int) -> tuple[np.ndarray, np.ndarray, np.random.Generator]:
        """Grid times (µs) and samples (n, 3) emitted in UTC minute ``b``, and that minute's RNG."""
        k = b * _ACCEL_BLOCK + np.arange(_ACCEL_BLOCK, dtype=np.int64)
        t_us = k * _ACCEL_STEP_US
        rng = np.random.default_rng([self.noise_key, b])
        noise = rng.standard_normal((_ACCEL_BLOCK, 3))
        jolts = rng.standard_normal((_ACCEL_BLOCK, 3))
        xyz = np.full((_ACCEL_BLOCK, 3), np.nan)
        moving = np.zeros(_ACCEL_BLOCK, dtype=bool)
        first = max(bisect.bisect_right(self._starts, int(t_us[0])) - 1, 0)
        last = max(bisect.bisect_right(self._starts, int(t_us[-1])) - 1, 0)
        seen = set()
        for i in range(first, last + 1):
            key, bouts = self.bouts(i)
            if key in seen:
                continue
            seen.add(key)
            for bout in bouts:
                lo, hi = np.searchsorted(t_us, (bout.start_us, bout.end_us))
                if lo >= hi:
                    continue
                s = (t_us[lo:hi] - bout.start_us) / 1e6
                xyz[lo:hi] = bout.signal(s, jolts[lo:hi])
                moving[lo:hi] = bout.moving
        xyz += self.bias + self.noise * noise
        emitted = moving | (k % _STILL_EVERY == 0)
        return t_us[emitted], xyz[emitted], rng


def _uuid4_strings(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` random UUIDv4 strings at once (a sample's message and trace ids)."""
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    h = raw.tobytes().hex()
    return [f"{h[o:o + 8]}-{h[o + 8:o + 12]}-{h[o + 12:o + 16]}-{h[o + 16:o + 20]}-{h[o + 20:o + 32]}"
            for o in range(0, 32 * n, 32)]


def accelerometer_stream(
    device: DemoDevice, plan: DayPlan, seed: int, start: datetime, end: datetime
) -> Iterator[DemoMessage]:
    """``device.sensor.accelerometer.raw`` (flat REST, docs/messages.md#payload-fields: x, y, z in
    m/s², gravity included) of a phone: 50 Hz while it moves (walks, stairs, drives, pick-ups;
    docs/flows/motion.md#windows) and 10 Hz while it rests (docs/messages.md#sampling-rates),
    following the same day plan as the GPS. Laptops have none. Samples lie on a grid anchored at the
    Unix epoch and all randomness is drawn per day-plan segment or per UTC minute, so consecutive
    windows join seamlessly."""
    if device.family != "phone":
        return
    motion = _PhoneMotion(device, plan, seed)
    lo_us, hi_us = _us(start), _us(end)
    block_us = _ACCEL_BLOCK * _ACCEL_STEP_US
    for b in range(lo_us // block_us, -(-hi_us // block_us)):
        t_us, xyz, rng = motion.block(b)
        latency = rng.integers(int(RECEIVE_LATENCY_MS[0] * 1000), int(RECEIVE_LATENCY_MS[1] * 1000),
                               size=len(t_us))
        ids = _uuid4_strings(rng, 2 * len(t_us))
        for j, (t, (x, y, z), lat) in enumerate(zip(t_us.tolist(), xyz.tolist(), latency.tolist())):
            if not lo_us <= t < hi_us:
                continue
            recorded = _EPOCH + timedelta(microseconds=t)
            payload = {"x": round(x, 4), "y": round(y, 4), "z": round(z, 4)}
            yield _flat_message(ACCELEROMETER_TOPIC, device.device_id, recorded,
                                recorded + timedelta(microseconds=lat), ids[2 * j], ids[2 * j + 1],
                                payload)
