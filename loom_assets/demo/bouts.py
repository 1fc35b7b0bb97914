"""Bouts of motion (resting, handling, walking, driving), each a vectorised signal of time."""

from __future__ import annotations

import copy
import math
import random

import numpy as np

from loom_assets.demo.day import Segment
from loom_assets.demo.motion import (
    BUMPS_PER_M,
    DRIVE_MAX_ACCEL,
    GAIT_HARMONICS,
    GAIT_IRREGULARITY,
    GRAVITY,
    HANDLING_TRANSIENT,
    HEEL_PHASE,
    HEEL_STRIKE,
    ROAD_VIBRATION,
    SHAKE_PEAK,
    STAIRS_CADENCE,
    STAIRS_VERTICAL,
    STEP_ASYMMETRY,
    _car_placement,
    _placement,
    _pulse,
    _random_direction,
    _slerp,
    _smooth,
    _smoothstep,
    _unit,
)


class _Bout:
    """A stretch of one kind of motion; ``signal(s, jolts)`` is the specific force (gravity
    included, phone frame, m/s², (n, 3)) at ``s`` seconds after ``start_us``; ``jolts`` is
    white noise (n, 3) for the irregular part of body and road motion."""

    kind = ""
    moving = True  # sampled at ACCEL_MOVING_HZ (else ACCEL_STILL_HZ)

    def __init__(self, start_us: int, end_us: int):
        self.start_us, self.end_us = start_us, end_us

    def signal(self, s: np.ndarray, jolts: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class _Rest(_Bout):
    """Lying still in one orientation; in a pocket, breathing rocks it a little."""

    kind, moving = "still", False

    def __init__(self, start_us: int, end_us: int, orientation: np.ndarray, rng: random.Random):
        super().__init__(start_us, end_us)
        self.gravity = GRAVITY * orientation[:, 2]
        on_table = abs(orientation[2, 2]) > 0.98
        self.breath = 0.0 if on_table else rng.uniform(0.01, 0.03)
        self.breath_dir = _random_direction(rng)
        self.breath_hz, self.breath_phase = rng.uniform(0.2, 0.3), rng.uniform(0, 2 * math.pi)

    def signal(self, s, jolts):
        out = np.broadcast_to(self.gravity, (len(s), 3)).copy()
        if self.breath:
            wave = self.breath * np.sin(2 * math.pi * self.breath_hz * s + self.breath_phase)
            out += wave[:, None] * self.breath_dir
        return out


class _Handling(_Bout):
    """Picked up, held and put down: gravity turns from ``before`` to the hand and on to
    ``after`` (phone-frame up vectors), with a jolt at pick-up and put-down, a slow wobble while
    held and, rarely, a shake."""

    kind = "handling"

    def __init__(self, start_us, end_us, before, after, rng: random.Random, shake: bool = False):
        super().__init__(start_us, end_us)
        self.duration = (end_us - start_us) / 1e6
        self.before, self.after = before, after
        self.hand = _placement(rng, "hand")[:, 2]
        self.turn = min(1.2, 0.3 * self.duration)  # seconds to lift / to put down
        self.jolts = [(t0, self.turn, rng.uniform(*HANDLING_TRANSIENT), rng.uniform(1.5, 3.5),
                       rng.uniform(0, 2 * math.pi), _random_direction(rng))
                      for t0 in (0.0, self.duration - self.turn)]
        self.wobble = (rng.uniform(0.1, 0.4), rng.uniform(0.8, 2.0), rng.uniform(0, 2 * math.pi),
                       _random_direction(rng))
        self.shake = None
        if shake:
            length = rng.uniform(0.6, 1.5)
            self.kind = "shake"
            axis = _unit([rng.gauss(0, 0.2), 1.0, rng.gauss(0, 0.2)])  # along the phone's length
            self.shake = (self.duration / 2 - length / 2, length, rng.uniform(*SHAKE_PEAK),
                          rng.uniform(4.0, 6.0), axis)

    def signal(self, s, jolts):
        lift = _smoothstep(s / self.turn)
        drop = _smoothstep((s - (self.duration - self.turn)) / self.turn)
        direction = _slerp(_slerp(self.before, self.hand, lift), self.after, drop)
        out = GRAVITY * direction
        for t0, length, peak, hz, phase, axis in self.jolts:
            jolt = peak * _pulse(s, t0, length) * np.sin(2 * math.pi * hz * (s - t0) + phase)
            out += jolt[:, None] * axis
        amp, hz, phase, axis = self.wobble
        held = _pulse(s, self.turn, max(self.duration - 2 * self.turn, 1e-3))
        out += (amp * held * np.sin(2 * math.pi * hz * s + phase))[:, None] * axis
        if self.shake is not None:
            t0, length, peak, hz, axis = self.shake
            out += (peak * _pulse(s, t0, length) * np.sin(2 * math.pi * hz * (s - t0)))[:, None] * axis
        return out


class _Gait(_Bout):
    """Walking with the phone in ``orientation``, sometimes on stairs.

    Body frame (forward, left, up): each axis is a sum of harmonics of the stride (half the step
    frequency) after ``GAIT_HARMONICS``, scaled per step (left and right feet differ), with a
    heel-strike jolt at each step, an irregular part, and a cadence that drifts by a few %. A
    phone in a trouser pocket also pitches with the hip at the stride frequency. A gate (0-1)
    scales it all: the GPS speed profile of a walk, or 1 s ramps in and out.
    """

    kind = "walk"

    def __init__(self, start_us, end_us, orientation, rng: random.Random, cadence: float,
                 vertical: float, swing: float, gate=None, ramp_in: float = 1.0):
        super().__init__(start_us, end_us)
        self.r = orientation
        self.duration = (end_us - start_us) / 1e6
        self.cadence = cadence * rng.uniform(0.97, 1.03)
        self.vertical = vertical * rng.uniform(0.9, 1.1)
        # (gait, axis) -> (stride multiples, amplitudes relative to the vertical step, phases)
        self.harmonics = {}
        for gait, axes in GAIT_HARMONICS.items():
            for axis, table in enumerate(axes):
                k = np.array(sorted(table), dtype=float)
                amp = np.array([table[int(x)] * rng.uniform(0.8, 1.2) for x in k])
                phase = np.array([rng.uniform(0, 2 * math.pi) for _ in k])
                self.harmonics[gait, axis] = (k, amp, phase)
        self.swing = (swing, rng.uniform(0, 2 * math.pi))
        self.heel = rng.uniform(*HEEL_STRIKE)
        self.irregular = rng.uniform(*GAIT_IRREGULARITY)
        # Steps are not a metronome: the cadence drifts by a few % over seconds.
        self.drift = [(rng.uniform(0.1, 0.5), rng.uniform(0, 2 * math.pi), rng.uniform(0.01, 0.03))
                      for _ in range(3)]
        self.gate, self.ramp_in, self.ramp_out = gate, ramp_in, 1.0
        self.origin_us = start_us  # the walk's time base: steps are counted from here
        self.stairs = (0.0, 0.0)  # seconds after origin_us spent on stairs
        steps = int((self.duration + 120) * self.cadence * 1.1) + 8  # (room to carry on)
        self.step_strength = np.random.default_rng(rng.getrandbits(64)).normal(1.0, 0.08, steps)
        limp = rng.uniform(*STEP_ASYMMETRY)
        self.step_strength[::2] *= 1 + limp
        self.step_strength[1::2] *= 1 - limp

    def carried_on(self, start_us: int, end_us: int, stairs: bool = False) -> _Gait:
        """The same walk going on over [start_us, end_us) (into the building, up the stairs),
        in step with this one, without its gate; it comes to a stop at the end unless stairs."""
        out = copy.copy(self)
        out.start_us, out.end_us = start_us, end_us
        out.duration = (end_us - start_us) / 1e6
        out.gate, out.ramp_in, out.ramp_out = None, 0.0, 0.0 if stairs else 1.0
        out.kind = "stairs" if stairs else "walk"
        if stairs:
            out.stairs = ((start_us - self.origin_us) / 1e6, (end_us - self.origin_us) / 1e6)
        return out

    def signal(self, s, jolts):
        u = s + (self.start_us - self.origin_us) / 1e6
        a, b = self.stairs
        climbing = np.clip(u - a, 0.0, b - a)  # seconds on the stairs so far
        steps = self.cadence * (u - (1 - STAIRS_CADENCE) * climbing)  # cumulative steps
        for hz, phase, depth in self.drift:  # (integral of cadence x depth x sin)
            w = 2 * math.pi * hz
            steps += self.cadence * depth * (np.cos(phase) - np.cos(w * u + phase)) / w
        stride_phase = math.pi * steps
        gate = np.ones_like(s) if self.gate is None else self.gate(s)
        if self.ramp_in:
            gate = gate * np.clip(s / self.ramp_in, 0, 1)
        if self.ramp_out:
            gate = gate * np.clip((self.duration - s) / self.ramp_out, 0, 1)
        # 0 walking .. 1 on the stairs, blended over the first and last step or so
        on_stairs = np.clip((u - a) / 0.6, 0, 1) * np.clip((b - u) / 0.6, 0, 1) if b > a else 0 * u
        strength = self.vertical * (1 + (STAIRS_VERTICAL - 1) * on_stairs)
        strength = strength * np.interp(steps - 0.5, np.arange(len(self.step_strength)), self.step_strength)
        body = np.empty((len(s), 3))
        for axis in range(3):
            waves = []
            for gait in ("walk", "stairs"):
                k, amp, phase = self.harmonics[gait, axis]
                waves.append(np.sin(np.outer(stride_phase, k) + phase) @ amp)
            body[:, axis] = strength * ((1 - on_stairs) * waves[0] + on_stairs * waves[1])
        # heel strike: a sharp, quickly damped jolt just before the vertical peak of each step
        since = np.mod(steps - HEEL_PHASE, 1.0) / self.cadence  # seconds since the last strike
        ringing = np.exp(-since / 0.05) * np.cos(2 * math.pi * 7.0 * since)
        strike = strength / self.vertical * self.heel * ringing
        body[:, 2] += strike
        body[:, 0] -= 0.5 * strike
        body = gate[:, None] * (body + self.irregular * jolts)
        body[:, 2] += GRAVITY
        theta = self.swing[0] * gate * np.sin(stride_phase + self.swing[1])
        cos, sin = np.cos(theta), np.sin(theta)  # the hip pitches about the lateral axis
        fx, fy, fz = body.T
        body = np.stack([fx * cos + fz * sin, fy, fz * cos - fx * sin], axis=1)
        return body @ self.r.T


class _Drive(_Bout):
    """Riding in the car along ``seg``'s speed profile: longitudinal acceleration is the
    derivative of the (smoothed) speed, lateral the centripetal v·dθ/dt in turns, plus
    engine/road vibration (10-20 Hz tones and broadband noise, growing with speed), the
    suspension's 1-3 Hz bounce and the odd bump."""

    kind = "drive"

    def __init__(self, start_us, end_us, seg: Segment, rng: random.Random):
        super().__init__(start_us, end_us)
        self.r = _car_placement(rng)
        prof = np.asarray(seg.profile, dtype=float)
        speed = _smooth(np.diff(prof), 1.0, "constant")  # m/s during each second
        self.t_mid = np.arange(len(speed)) + 0.5
        self.speed = speed
        self.a_lon = np.clip(np.gradient(speed), -DRIVE_MAX_ACCEL, DRIVE_MAX_ACCEL)
        assert seg.path is not None
        heading = np.unwrap(np.radians([seg.path.locate(d)[2] for d in prof]))
        yaw_rate = np.gradient(_smooth(heading, 2.0, "edge"))  # rad/s, clockwise (bearing)
        v_at = np.interp(np.arange(len(prof)), self.t_mid, speed)
        self.a_lat = np.clip(-v_at * yaw_rate, -DRIVE_MAX_ACCEL, DRIVE_MAX_ACCEL)  # left positive
        tones = np.array([[rng.uniform(10.0, 20.0), rng.uniform(0, 2 * math.pi), rng.uniform(0.5, 1.0)]
                          for _ in range(18)]).reshape(3, 6, 3)
        tones[:, :, 2] *= math.sqrt(2) / np.sqrt((tones[:, :, 2] ** 2).sum(axis=1, keepdims=True))
        self.tones = tones  # per axis: (Hz, phase, amplitude), unit RMS
        self.bounce = [(rng.uniform(1.2, 1.8), rng.uniform(0, 2 * math.pi)),
                       (rng.uniform(2.2, 3.0), rng.uniform(0, 2 * math.pi))]
        bumps = []
        for _ in range(int(prof[-1] * BUMPS_PER_M * rng.uniform(0.5, 1.5))):
            at = float(np.searchsorted(prof, rng.uniform(0, prof[-1])))
            bumps.append((at, rng.uniform(0.8, 2.0), rng.uniform(1.5, 2.2)))
        self.bumps = sorted(bumps)

    def signal(self, s, jolts):
        v = np.interp(s, self.t_mid, self.speed, left=0.0, right=0.0)
        a_lon = np.interp(s, self.t_mid, self.a_lon, left=0.0, right=0.0)
        a_lat = np.interp(s, np.arange(len(self.a_lat)), self.a_lat)
        rms = ROAD_VIBRATION[0] + ROAD_VIBRATION[1] * v
        vib = np.empty((len(s), 3))
        for axis, scale in enumerate((0.5, 0.5, 1.0)):  # the road shakes mostly vertically
            hz, phase, amp = self.tones[axis].T
            tonal = (amp * np.sin(2 * math.pi * np.outer(s, hz) + phase)).sum(axis=1)
            vib[:, axis] = scale * rms * 0.7 * (tonal + jolts[:, axis])
        moving = np.clip(v / 12.0, 0, 1.5)
        for hz, phase in self.bounce:
            vib[:, 2] += 0.15 * moving * np.sin(2 * math.pi * hz * s + phase)
        lo, hi = float(s[0]) - 2.0, float(s[-1])
        for at, peak, hz in self.bumps:
            if lo <= at <= hi:
                tau = s - at
                hit = tau >= 0
                vib[hit, 2] += peak * np.exp(-tau[hit] / 0.35) * np.sin(2 * math.pi * hz * tau[hit])
        body = np.stack([a_lon + vib[:, 0], a_lat + vib[:, 1], GRAVITY + vib[:, 2]], axis=1)
        return body @ self.r.T
