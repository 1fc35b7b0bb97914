"""What the accelerometer is made of: its rates, the gait and handling constants, orientations."""

from __future__ import annotations

import math
import random
from datetime import datetime, timezone

import numpy as np

# ---- accelerometer ---------------------------------------------------------------------------
#
# What the phone feels, as a function of absolute time: every segment of the day is cut into
# *bouts* (resting in one orientation, being handled, walking or climbing stairs, riding in the
# car), each a vectorised signal of the time since it began. Samples sit on a 50 Hz grid anchored
# at the Unix epoch and sensor noise and message ids are drawn per UTC minute, so any window
# of the day yields exactly the samples of a longer window that contains it (``loom dev`` makes
# an hour at a time).

ACCEL_MOVING_HZ = 50  # docs/flows/motion.md#windows: 50 Hz, as the step counter assumes
ACCEL_STILL_HZ = 10  # docs/messages.md#sampling-rates accelerometer interval: 100 ms
GRAVITY = 9.80665  # m/s², standard gravity
_ACCEL_STEP_US = 1_000_000 // ACCEL_MOVING_HZ  # the 20 ms grid
_STILL_EVERY = ACCEL_MOVING_HZ // ACCEL_STILL_HZ  # while still, every 5th grid point (100 ms)
_ACCEL_BLOCK = 60 * ACCEL_MOVING_HZ  # grid points per UTC minute: noise and ids are drawn per block
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

ACCEL_NOISE = (0.02, 0.05)  # m/s² white sensor noise per axis (brief: 0.02-0.05), per device
ACCEL_BIAS = 0.03  # m/s² spread of the per-axis calibration offset
CADENCE_HZ = (1.7, 2.0)  # steps/s, per person (brief: 1.7-2.0)
STEP_VERTICAL = (2.0, 3.0)  # m/s² peak of the vertical step fundamental, per person (brief: 2-4)
# Gait waveform: peak amplitude of each harmonic of the stride frequency (2 = the step frequency)
# relative to the vertical step fundamental, per body axis (forward, left, up). Measured as the
# median over UCI HAPT's walking and walking-upstairs windows (phone on the waist, 30 people):
# walking has a strong 1.5x-step component (left and right steps differ), stairs a stronger
# half-step sway and push-off. HAPT stairs: 0.9x the cadence, 1.3x the vertical step.
GAIT_HARMONICS: dict[str, tuple[dict[int, float], ...]] = {
    "walk": ({1: 0.18, 2: 0.64, 3: 0.17, 4: 0.37, 5: 0.23, 6: 0.36},
             {1: 0.34, 2: 0.14, 3: 0.14, 4: 0.09, 5: 0.17, 6: 0.09},
             {1: 0.08, 2: 1.0, 3: 0.40, 4: 0.27, 5: 0.19, 6: 0.35}),
    "stairs": ({1: 0.35, 2: 0.36, 3: 0.11, 4: 0.23, 5: 0.11, 6: 0.08},
               {1: 0.32, 2: 0.21, 3: 0.08, 4: 0.12},
               {1: 0.13, 2: 1.0, 3: 0.12, 4: 0.25, 5: 0.11, 6: 0.23}),
}
STAIRS_CADENCE, STAIRS_VERTICAL = 0.9, 1.3
HEEL_STRIKE = (1.0, 2.0)  # m/s² peak of the jolt as a foot lands
HEEL_PHASE = 0.2  # of a step cycle
STEP_ASYMMETRY = (0.05, 0.12)  # left vs right step strength (+-)
GAIT_IRREGULARITY = (0.4, 0.7)  # m/s² RMS of the non-periodic part of walking, per axis
POCKET_SWING_RAD = (0.05, 0.12)  # a phone in a trouser pocket pitches with the hip, per stride
WALK_GATE_MPS = 0.8  # GPS speed (m/s) at which the gait has its full amplitude
# Pick-ups per hour of each activity (~20/h x the phone's ACTIVITY_INTENSITY, fewer at night);
# a few of them (P_SHAKE) are shakes.
HANDLINGS_PER_H = {"sleep": 0.4, "morning": 14.0, "work": 7.0, "coffee": 10.0, "evening": 14.0}
P_SHAKE = 0.02
HANDLING_TRANSIENT = (1.0, 3.0)  # m/s² peak of a pick-up's / put-down's jolt (brief: 1-3)
SHAKE_PEAK = (4.0, 6.5)  # m/s², below the 8 m/s² that docs/flows/motion.md#significant-motion reads as a fall
DRIVE_MAX_ACCEL = 3.0  # m/s², longitudinal and lateral (brief: <= 3)
ROAD_VIBRATION = (0.05, 0.02)  # m/s² RMS (vertical) = idle + per m/s of speed: ~0.3 at 45 km/h
BUMPS_PER_M = 1 / 400.0  # potholes, manhole covers, speed bumps

_Z = np.array([0.0, 0.0, 1.0])


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    return v / np.linalg.norm(v)


def _rot_z(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _orientation(up, yaw: float) -> np.ndarray:
    """World→phone rotation (``a_phone = R @ a_world``; world x forward, y left, z up) of a phone
    that sees world-up along ``up`` (phone frame), turned by ``yaw`` about the vertical."""
    up = _unit(up)
    c = float(_Z @ up)
    if c < -0.999999:
        r0 = np.diag([1.0, -1.0, -1.0])
    else:
        vx, vy, vz = np.cross(_Z, up)
        k = np.array([[0.0, -vz, vy], [vz, 0.0, -vx], [-vy, vx, 0.0]])
        r0 = np.eye(3) + k + k @ k / (1.0 + c)
    return r0 @ _rot_z(yaw)


def _placement(rng: random.Random, where: str) -> np.ndarray:
    """A phone orientation: on a table (screen up, sometimes down), in a trouser pocket while
    sitting (about flat on the thigh) or standing (upright), or held in the hand."""
    yaw = rng.uniform(0, 2 * math.pi)
    if where == "table":
        up = (rng.gauss(0, 0.03), rng.gauss(0, 0.03), 1.0 if rng.random() < 0.85 else -1.0)
    elif where == "sitting_pocket":
        up = (rng.gauss(0, 0.3), rng.gauss(0, 0.3), rng.choice((1.0, -1.0)))
    elif where == "pocket":
        up = (rng.gauss(0, 0.2), rng.choice((1.0, -1.0)), rng.gauss(0, 0.2))
    else:  # hand: screen toward the face, ~40° from vertical
        up = (rng.gauss(0, 0.1), math.sin(0.7), math.cos(0.7))
    return _orientation(up, yaw)


def _resting_place(rng: random.Random, activity: str) -> np.ndarray:
    if activity == "sleep" or rng.random() < 0.75:
        return _placement(rng, "table")
    return _placement(rng, "sitting_pocket")


def _car_placement(rng: random.Random) -> np.ndarray:
    if rng.random() < 0.7:  # in a dashboard/vent mount, screen toward the driver, leaning back
        beta = rng.uniform(0.1, 0.4)
        ey = np.array([math.sin(beta), 0.0, math.cos(beta)])  # top edge: up, tilted forward
        ez = np.array([-math.cos(beta), 0.0, math.sin(beta)])  # screen: back to the driver
        r = np.array([np.cross(ey, ez), ey, ez])
        if rng.random() < 0.3:  # landscape
            r = _rot_z(rng.choice((1, -1)) * math.pi / 2) @ r
        return r @ _rot_z(rng.uniform(-0.3, 0.3))  # mount turned toward the driver
    return _orientation((rng.gauss(0, 0.15), rng.gauss(0, 0.15), 1.0), rng.uniform(0, 2 * math.pi))


def _smooth(values: np.ndarray, sigma: float, pad: str) -> np.ndarray:
    """Gaussian smoothing of a 1 Hz series (``sigma`` in samples)."""
    half = int(3 * sigma) + 1
    kernel = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma) ** 2)
    padded = np.pad(values, half, mode=pad)
    return np.convolve(padded, kernel / kernel.sum(), mode="valid")


def _slerp(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Per-sample spherical interpolation between unit vectors ``a`` and ``b`` ((n, 3) or (3,))."""
    a = np.broadcast_to(a, (len(w), 3))
    b = np.broadcast_to(b, (len(w), 3))
    cos = np.clip((a * b).sum(axis=1), -1.0, 1.0)
    omega = np.arccos(cos)
    sin = np.sin(omega)
    safe = sin > 1e-6
    fa = np.where(safe, np.sin((1 - w) * omega) / np.where(safe, sin, 1.0), 1 - w)
    fb = np.where(safe, np.sin(w * omega) / np.where(safe, sin, 1.0), w)
    out = fa[:, None] * a + fb[:, None] * b
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _pulse(s: np.ndarray, t0: float, length: float) -> np.ndarray:
    """sin² window over [t0, t0 + length): 0 at both ends, so bouts join without jumps."""
    x = (s - t0) / length
    return np.where((x >= 0) & (x < 1), np.sin(np.pi * np.clip(x, 0, 1)) ** 2, 0.0)


def _random_direction(rng: random.Random) -> np.ndarray:
    return _unit([rng.gauss(0, 1) for _ in range(3)])
