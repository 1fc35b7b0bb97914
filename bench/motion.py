"""Benchmark of the motion flow on an hour of 50 Hz accelerometer data, against a bare numpy loop.

Run from the repository root:

    .venv/bin/python bench/motion.py [--devices 3] [--minutes 60] [--rate 50] [--profile motion.prof]

What it does, all in one process against services it starts itself (a real Apache Kafka
broker and an embedded PostgreSQL, both in temporary folders, stopped at the end; the
helpers come from bench/landing.py):

1. Applies the `sql/` migrations and creates `device.sensor.accelerometer.raw` (3 partitions).
2. Generates `--minutes` of accelerometer samples at `--rate` Hz for each of `--devices` phones
   (m/s², gravity included, a random phone orientation per stretch): still stretches (sensor
   noise), walks (a heel-strike shaped gait at ~1.8 steps/s, 2-4 m/s²) and drives (road
   vibration, engine hum, speed changes, the odd pothole). The samples end at the start of the
   window before the current one, so every 5-minute window they cover is closed. Each sample
   is produced as one flat Loom v2 REST envelope (docs/messages.md#rest-envelope) keyed by device,
   with its event time as Kafka timestamp (produce time is printed, not part of the figures).
3. **Loom**: plans the windows with the sensor's own function (`plan_closed_windows`: the
   first plan starts at the window of the oldest record), then runs `motion_job` (raw landing, windows, significant_motion, activities) for each
   window in order through Dagster (`execute_in_process`, as `loom process` does). Prints the
   wall time per window and, from the run's step stats, events/s per stage = samples / step
   seconds (each step includes loading its inputs from and writing its rows to PostgreSQL).
   Checks the row counts of the tables.
4. **Bare baseline** on the same samples (the generated arrays, in memory: no Kafka, database,
   pandas or Dagster): per device, a Python loop over the 5 s windows every 4 s (slice,
   resample to 50 Hz with np.interp, mean/std per axis, magnitude mean/std, Hann-windowed
   zero-padded rfft peak frequency, Butterworth 0.5-3 Hz + filtfilt + find_peaks steps, and
   `loom_assets.stages.activity.feature_vector`, the same function since it is the
   computation), then the classifier's `predict_proba` batched per device with the
   confidence/cadence decision, and a vectorised threshold-crossing significant-motion pass
   (debounce, 30 s cut, per-event statistics with the flow's own `motion_type` and
   `activity_type`). Raw landing has no baseline here: bench/landing.py is its benchmark.
5. Prints a table of events/s per stage (loom, bare, ratio loom/bare; timings are printed,
   never asserted), the wall time per 5-minute window, per-window step times and peak RSS.

`--profile FILE` additionally re-runs one window in the middle of the hour under cProfile
(a re-run deletes and rewrites the window), writes the stats to FILE and prints the top
functions of each stage.
"""

from __future__ import annotations

import argparse
import math
import random
import resource
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.landing import (  # noqa: E402 - needs the repository root on sys.path
    bench_services,
    count_rows,
    current_rss_mib,
    peak_rss_mib,
    reset_peak_rss,
)

TOPIC = "device.sensor.accelerometer.raw"
FLOW = "motion"
PARTITIONS = 3
GRAVITY = 9.80665
STAGES = ("raw", "windows", "significant_motion", "activities")


# -- synthetic accelerometer data ---------------------------------------------------------------
@dataclass
class DeviceData:
    device_id: str
    t_us: np.ndarray   # int64 µs since the epoch, strictly increasing
    xyz: np.ndarray    # (n, 3) float64 m/s², gravity included (rounded to 1e-5 as sent)
    kinds: list[tuple[str, float]]  # (kind, seconds) of each stretch
    steps: int         # heel strikes generated


def _rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random rotation (QR of a Gaussian matrix, sign-fixed)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q @ np.diag(np.sign(np.diag(r)))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _still(rng, n, rate):
    world = np.zeros((n, 3))
    world[:, 2] = GRAVITY
    world += rng.normal(0, 0.02, (n, 3))
    return world, 0


def _walking(rng, n, rate):
    """Body-frame specific force of a walk: per step a vertical bounce (amplitude 2-4 m/s²)
    sharpened by a heel strike, forward sway at the step rate and lateral sway at the stride
    rate (half of it), each step a little stronger or weaker than the one before."""
    seconds = np.arange(n) / rate
    cadence = rng.uniform(1.6, 2.0) + 0.05 * np.sin(2 * np.pi * seconds / rng.uniform(20, 60))
    phase = np.cumsum(cadence) / rate            # steps since the stretch started
    step = np.floor(phase).astype(int)
    u = phase - step                             # position within the step, [0, 1)
    amplitude = rng.uniform(2.0, 4.0) * (1 + 0.1 * rng.normal(size=step.max() + 1))[step]
    heel = np.exp(-((u - 0.1) / 0.04) ** 2)
    heel -= np.sqrt(np.pi) * 0.04                # its mean over a step
    world = np.empty((n, 3))
    world[:, 0] = 0.25 * amplitude * np.sin(np.pi * phase)                 # lateral, stride
    world[:, 1] = 0.4 * amplitude * np.sin(2 * np.pi * u + 1.0)             # forward
    world[:, 2] = GRAVITY + amplitude * (np.cos(2 * np.pi * (u - 0.15)) + 0.6 * heel)
    world += rng.normal(0, 0.15, (n, 3))
    return world, int(step.max()) + 1


def _driving(rng, n, rate):
    """Road vibration, an engine hum, slow speed changes and an occasional pothole."""
    seconds = np.arange(n) / rate
    world = np.zeros((n, 3))
    world[:, 2] = GRAVITY
    world += rng.normal(0, 0.12, (n, 3))
    hum = rng.uniform(10, 14)
    world[:, 2] += 0.08 * np.sin(2 * np.pi * hum * seconds)
    for f in rng.uniform(0.02, 0.2, 3):        # accelerating, braking, turning
        world[:, 1] += 0.4 * np.sin(2 * np.pi * f * seconds + rng.uniform(0, 2 * np.pi))
        world[:, 0] += 0.2 * np.sin(2 * np.pi * f * 0.7 * seconds + rng.uniform(0, 2 * np.pi))
    for at in rng.uniform(0, seconds[-1], rng.poisson(seconds[-1] / 40)):   # potholes
        world[:, 2] += rng.uniform(2.5, 5.0) * np.exp(-((seconds - at) / 0.06) ** 2) * np.cos(
            2 * np.pi * 6 * (seconds - at))
    return world, 0


KINDS = {"still": (_still, (60, 480)), "walking": (_walking, (60, 360)), "driving": (_driving, (180, 600))}
KIND_WEIGHTS = {"still": 0.4, "walking": 0.35, "driving": 0.25}


def generate(devices: int, start: datetime, seconds: float, rate: float, seed: int = 7) -> list[DeviceData]:
    """`seconds` of samples at `rate` Hz from `start` per device, ±10 % of a period of jitter."""
    out = []
    start_us = int(start.timestamp() * 1_000_000)
    period_us = 1_000_000 / rate
    for d in range(devices):
        rng = np.random.default_rng([seed, d])
        device_id = str(uuid.UUID(int=random.Random(seed * 1000 + d).getrandbits(128), version=4))
        n = int(seconds * rate)
        offset = rng.uniform(0, period_us)
        t_us = start_us + np.floor(offset + np.arange(n) * period_us
                                   + rng.uniform(-0.1, 0.1, n) * period_us).astype(np.int64)
        t_us = np.clip(t_us, start_us, start_us + int(seconds * 1_000_000) - 1)
        xyz = np.empty((n, 3))
        kinds, steps, i, previous = [], 0, 0, None
        while i < n:
            names = [k for k in KINDS if k != previous]
            weights = np.array([KIND_WEIGHTS[k] for k in names])
            kind = names[rng.choice(len(names), p=weights / weights.sum())]
            make, (lo, hi) = KINDS[kind]
            length = min(n - i, int(rng.uniform(lo, hi) * rate))
            world, stepped = make(rng, length, rate)
            xyz[i:i + length] = world @ _rotation(rng)       # the phone's axes
            kinds.append((kind, length / rate))
            steps += stepped
            i += length
            previous = kind
        out.append(DeviceData(device_id, t_us, np.round(xyz, 5), kinds, steps))
    return out


def produce(bootstrap: str, data: list[DeviceData], seed: int = 1) -> int:
    """Every sample as one flat REST envelope in event-time order, keyed by device, Kafka
    timestamp = event time (ms). Values are built a chunk at a time. Returns messages sent."""
    import orjson
    from confluent_kafka import Producer

    rng = random.Random(seed)
    producer = Producer({
        "bootstrap.servers": bootstrap, "linger.ms": 50, "batch.size": 1_000_000,
        "queue.buffering.max.messages": 1_000_000, "compression.type": "lz4",
    })
    failures: list[str] = []

    def delivered(error, _message):
        if error is not None:
            failures.append(str(error))

    which = np.concatenate([np.full(len(d.t_us), i) for i, d in enumerate(data)])
    index = np.concatenate([np.arange(len(d.t_us)) for d in data])
    times = np.concatenate([d.t_us for d in data])
    order = np.argsort(times, kind="stable")
    keys = [d.device_id.encode() for d in data]
    services = ["ingestion-api", "kafka-producer"]
    sent = 0
    chunk = 50_000
    for first in range(0, len(order), chunk):
        rows = order[first:first + chunk]
        t = times[rows]
        received = t + np.asarray([rng.randint(50_000, 900_000) for _ in range(len(rows))], dtype=np.int64)
        recorded_s = np.datetime_as_string(t.astype("datetime64[us]"), unit="us")
        received_s = np.datetime_as_string(received.astype("datetime64[us]"), unit="us")
        stamps = (t // 1000).tolist()
        for k, (d, i) in enumerate(zip(which[rows].tolist(), index[rows].tolist(), strict=True)):
            device = data[d]
            x, y, z = device.xyz[i].tolist()
            value = orjson.dumps({
                "schema_version": "1.0", "device_id": device.device_id, "recorded_at": recorded_s[k] + "Z",
                "timestamp": received_s[k] + "Z",
                "message_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "trace_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "services_encountered": services, "x": x, "y": y, "z": z,
            })
            while True:
                try:
                    producer.produce(TOPIC, value=value, key=keys[d], timestamp=stamps[k], on_delivery=delivered)
                    break
                except BufferError:
                    producer.poll(0.05)
            sent += 1
        producer.poll(0)
    remaining = producer.flush(120)
    if remaining or failures:
        raise RuntimeError(f"produce: {remaining} undelivered, errors {failures[:3]}")
    return sent


# -- the bare baseline ----------------------------------------------------------------------------
def bare_windows(data: list[DeviceData], rules, feature_fn):
    """Per device, a loop over the 5 s windows every 4 s (grid of multiples of 4 s since the
    epoch, windows ending by the device's last sample). Returns ({device: (k, F) features},
    {device: step counts of the featured windows}, windows, featured windows)."""
    from scipy import signal

    fs = rules.resample_hz
    length, step = int(rules.window_seconds * 1e6), int(rules.step_seconds * 1e6)
    n50 = int(round(rules.window_seconds * fs))
    offsets = np.round(np.arange(n50) * (1e6 / fs)).astype(np.int64)
    hann = np.hanning(n50)
    size = n50 * rules.spectrum_padding
    b, a = signal.butter(rules.step_filter_order, rules.step_band_hz, btype="bandpass", fs=fs)
    owned_from, owned_to = int(round(0.5 * fs)), int(round((rules.window_seconds - 0.5) * fs))
    min_samples, max_gap = rules.min_samples, int(rules.max_gap_seconds * 1e6)
    features, steps, stats, peak_hz = {}, {}, [], []
    windows = featured = 0
    for device in data:
        t, xyz = device.t_us, device.xyz
        first_k = (t[0] - length) // step + 1
        last_k = (t[-1] - length) // step
        device_features, device_steps = [], []
        for k in range(first_k, last_k + 1):
            s = k * step
            lo, hi = np.searchsorted(t, s), np.searchsorted(t, s + length)
            if hi <= lo:
                continue
            ts, seg = t[lo:hi], xyz[lo:hi]
            magnitude = np.sqrt((seg * seg).sum(axis=1))
            stats.append((seg.mean(axis=0), seg.std(axis=0), magnitude.mean(), magnitude.std()))
            windows += 1
            gap = max(ts[0] - s, s + length - ts[-1], int(np.diff(ts).max()) if len(ts) > 1 else 0)
            if len(ts) < min_samples or gap > max_gap:
                continue
            grid = np.clip(s + offsets, ts[0], ts[-1]).astype(np.float64)
            tf = ts.astype(np.float64)
            w = np.stack([np.interp(grid, tf, seg[:, axis]) for axis in range(3)], axis=-1)
            m50 = np.sqrt((w * w).sum(axis=1))
            centred = m50 - m50.mean()
            power = np.abs(np.fft.rfft(centred * hann, n=size)) ** 2
            power[0] = 0.0
            peak_hz.append(power.argmax() * fs / size if centred.std() > 1e-6 else math.nan)
            filtered = signal.filtfilt(b, a, centred)
            peaks, _ = signal.find_peaks(filtered, height=rules.step_peak_height,
                                         distance=max(1.0, rules.step_min_interval_seconds * fs))
            device_steps.append(int(((peaks >= owned_from) & (peaks < owned_to)).sum()))
            device_features.append(np.asarray(feature_fn(w), dtype=np.float32))
            featured += 1
        features[device.device_id] = np.stack(device_features) if device_features else np.zeros((0, 1))
        steps[device.device_id] = np.asarray(device_steps)
    return features, steps, windows, featured


def bare_classification(features: dict, steps: dict, classifier, window_seconds: float,
                        min_confidence: float, running_cadence: float) -> dict[str, int]:
    """predict_proba batched per device, then the classifier/cadence part of the decision."""
    labels = np.asarray(classifier.labels)
    walking_like = np.isin(labels, ["walking", "stairs"])
    counts: dict[str, int] = {}
    for device_id, matrix in features.items():
        if not len(matrix):
            continue
        p = classifier.predict_proba(matrix)
        top = p.argmax(axis=1)
        confidence = p[np.arange(len(p)), top]
        label = np.where(confidence >= min_confidence, labels[top], "unknown")
        label = np.where((steps[device_id] / window_seconds > running_cadence) & walking_like[top], "running", label)
        for name, n in zip(*np.unique(label, return_counts=True), strict=True):
            counts[str(name)] = counts.get(str(name), 0) + int(n)
    return counts


def bare_significant_motion(data: list[DeviceData], rules, motion_type, activity_type) -> int:
    """Threshold crossings, debounced runs cut at the maximum duration, per-event statistics."""
    us = 1_000_000
    debounce, longest = int(rules.debounce_seconds * us), int(rules.max_event_seconds * us)
    shortest, context = int(rules.min_event_seconds * us), int(rules.context_seconds * us)
    rows: list[tuple] = []
    for device in data:
        t, xyz = device.t_us, device.xyz
        m = np.abs(np.sqrt((xyz * xyz).sum(axis=1)) - rules.gravity)
        c = t[m >= rules.motion_threshold]
        if not len(c):
            continue
        starts = np.concatenate([[0], np.flatnonzero(np.diff(c) >= debounce) + 1])
        ends = np.concatenate([starts[1:], [len(c)]])
        for a, b in zip(starts, ends, strict=True):
            i = a
            while i < b:
                j = i + int(np.searchsorted(c[i:b], c[i] + longest))
                start, end = int(c[i]), int(c[j - 1])
                i = j
                if end - start < shortest:
                    continue
                lo, hi = np.searchsorted(t, start), np.searchsorted(t, end, side="right")
                own, own_xyz = m[lo:hi], xyz[lo:hi]
                rows.append((own.max(), own.mean(), own.std(), own.min(), np.percentile(own, [25, 75]),
                             own_xyz.var(axis=0)))
                ca, cb = np.searchsorted(t, start - context), np.searchsorted(t, end + context, side="right")
                span = m[ca:cb]
                rows[-1] += (motion_type((t[ca:cb] - t[ca]) / us, span, rules),
                             activity_type(float(span.mean()), float(span.std()), rules))
    return len(rows)


# -- helpers ----------------------------------------------------------------------------------------
def _fmt_rate(value: float) -> str:
    return f"{value:>12,.0f}" if value and math.isfinite(value) else f"{'-':>12}"


def step_seconds(instance, run_id: str) -> dict[str, float]:
    """Seconds per stage (`motion__windows` -> windows) from the run's step stats."""
    out: dict[str, float] = {}
    for stat in instance.get_run_step_stats(run_id):
        if stat.start_time is None or stat.end_time is None:
            continue
        stage = stat.step_key.split("__", 1)[-1].split("[")[0]
        out[stage] = out.get(stage, 0.0) + stat.end_time - stat.start_time
    return out


# -- main -------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=3)
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--rate", type=float, default=50, help="samples per second per device")
    parser.add_argument("--profile", type=Path, default=None,
                        help="also profile a re-run of one window into this file")
    args = parser.parse_args()

    with bench_services("loom-bench-motion-") as (work, url, broker):
        # Loom itself is imported only now, with its environment in place.
        from dagster import DagsterInstance

        from loom_assets import definitions
        from loom_assets.flows import motion as motion_flow
        from loom_assets.models.activity import load as load_classifier
        from loom_assets.resources.warehouse import apply_migrations
        from loom_assets.sensors.kafka_windows import plan_closed_windows
        from loom_assets.stages.activity import feature_vector
        from loom_assets.stages.motion import activity_type, motion_type
        from loom_assets.windows import partition_key, window_of

        apply_migrations(url)
        flow = definitions.flow_named(FLOW)
        kafka, warehouse = definitions.resources()["kafka"], definitions.resources()["warehouse"]
        kafka.create_topics({
            TOPIC: (PARTITIONS, {"max.message.bytes": str(64 * 1024 * 1024)}),
            flow.error_topic: (PARTITIONS, {}),
        })
        instance = DagsterInstance.get()
        job = definitions.defs.resolve_job_def(flow.job.name)

        # -- 2. generate and produce ---------------------------------------------------------------
        now = datetime.now(UTC)
        data_end = window_of(now, flow.window) - flow.window   # the newest closed window starts here
        data_start = data_end - timedelta(minutes=args.minutes)
        t0 = time.monotonic()
        data = generate(args.devices, data_start, args.minutes * 60, args.rate)
        gen_s = time.monotonic() - t0
        total = sum(len(d.t_us) for d in data)
        mix: dict[str, float] = {}
        for d in data:
            for kind, seconds in d.kinds:
                mix[kind] = mix.get(kind, 0.0) + seconds
        print(f"generated {total:,} samples in {gen_s:.1f}s: "
              + ", ".join(f"{k} {s / 60:.0f} min" for k, s in sorted(mix.items()))
              + f", {sum(d.steps for d in data):,} steps", flush=True)
        t0 = time.monotonic()
        sent = produce(broker.bootstrap_servers, data)
        produce_s = time.monotonic() - t0
        print(f"produced {sent:,} messages in {produce_s:.1f}s ({sent / produce_s:,.0f}/s, not in the figures)",
              flush=True)

        # -- 3. plan and run each window -----------------------------------------------------------
        # The first plan starts at the oldest record's window, so the hour spreads over its own windows.
        planned = []
        while True:
            more = plan_closed_windows(flow, kafka, warehouse, datetime.now(UTC))
            if not more:
                break
            planned += more
        windows = [w for w in planned if w.records]
        if sum(w.records for w in windows) != total:
            raise RuntimeError(f"planned {sum(w.records for w in windows)} records of {total}: "
                               f"{[(partition_key(w.start), w.records) for w in planned]}")
        print(f"planned {len(planned)} windows, {len(windows)} with records "
              f"({', '.join(str(w.records) for w in windows)})", flush=True)

        setup_rss = peak_rss_mib()   # generation and produce; read before the reset clears it
        reset_peak_rss()
        loom_rss_start = current_rss_mib()
        walls, per_window = [], []
        for w in windows:
            key = partition_key(w.start)
            t0 = time.monotonic()
            result = job.execute_in_process(partition_key=key, instance=instance, tags={"loom/flow": FLOW},
                                            raise_on_error=True)
            walls.append(time.monotonic() - t0)
            per_window.append((key, w.records, step_seconds(instance, result.run_id)))
            print(f"  {key}: {w.records:,} samples, {walls[-1]:.2f}s  "
                  + "  ".join(f"{s} {per_window[-1][2].get(s, math.nan):.2f}" for s in STAGES), flush=True)
        loom_rss = peak_rss_mib()
        loom_stage_s = {s: sum(p[2].get(s, 0.0) for p in per_window) for s in STAGES}

        rows = {table: count_rows(url, f"{FLOW}_{table}") for table in STAGES}

        # -- 4. bare baseline ----------------------------------------------------------------------
        rules, activity_rules = motion_flow.RULES, motion_flow.ACTIVITY_RULES
        t0 = time.monotonic()
        classifier = load_classifier()
        load_s = time.monotonic() - t0
        reset_peak_rss()
        bare_rss_start = current_rss_mib()
        t0 = time.monotonic()
        features, steps, bare_window_count, featured = bare_windows(data, rules, feature_vector)
        bare_windows_s = time.monotonic() - t0
        t0 = time.monotonic()
        bare_events = bare_significant_motion(data, rules, motion_type, activity_type)
        bare_motion_s = time.monotonic() - t0
        t0 = time.monotonic()
        labels = bare_classification(features, steps, classifier, rules.window_seconds,
                                     activity_rules.min_confidence, activity_rules.running_cadence_hz)
        bare_class_s = time.monotonic() - t0
        bare_rss = peak_rss_mib()
        bare_stage_s = {"windows": bare_windows_s, "significant_motion": bare_motion_s,
                        "activities": bare_class_s}

        import psycopg

        with psycopg.connect(url) as conn:
            loom_steps = conn.execute("SELECT coalesce(sum(step_count), 0) FROM motion_windows").fetchone()[0]
            loom_labels = dict(conn.execute(
                "SELECT activity, count(*) FROM motion_activities GROUP BY 1 ORDER BY 1").fetchall())
        bare_steps = int(sum(s.sum() for s in steps.values()))

        # -- optional: profile one window ----------------------------------------------------------
        if args.profile:
            import cProfile
            import pstats

            key = partition_key(windows[len(windows) // 2].start)
            profiler = cProfile.Profile()
            profiler.enable()
            job.execute_in_process(partition_key=key, instance=instance, tags={"loom/flow": FLOW})
            profiler.disable()
            profiler.dump_stats(str(args.profile))
            print(f"\nprofile of a re-run of {key} written to {args.profile}; top functions by cumulative time:")
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(60)
            pstats.Stats(profiler).sort_stats("tottime").print_stats(30)

        # -- 5. the table ---------------------------------------------------------------------------
        print(f"\nmotion flow, {args.devices} devices x {args.minutes:g} min x {args.rate:g} Hz = {total:,} samples, "
              f"{len(windows)} windows")
        print(f"{'stage':<20}{'loom ev/s':>12}{'bare ev/s':>12}{'ratio':>8}{'loom s':>9}{'bare s':>9}")
        for stage in STAGES:
            loom_rate = total / loom_stage_s[stage] if loom_stage_s[stage] else math.nan
            bare_s = bare_stage_s.get(stage)
            bare_rate = total / bare_s if bare_s else math.nan
            ratio = f"{loom_rate / bare_rate:>8.2f}" if bare_s else f"{'-':>8}"
            label = "raw (landing)" if stage == "raw" else stage
            bare_col = f"{bare_s:>9.2f}" if bare_s else f"{'-':>9}"
            print(f"{label:<20}{_fmt_rate(loom_rate)}{_fmt_rate(bare_rate)}{ratio}{loom_stage_s[stage]:>9.2f}{bare_col}")
        loom_proc = sum(loom_stage_s[s] for s in bare_stage_s)
        bare_proc = sum(bare_stage_s.values())
        print(f"{'stages (no raw)':<20}{_fmt_rate(total / loom_proc)}{_fmt_rate(total / bare_proc)}"
              f"{(total / loom_proc) / (total / bare_proc):>8.2f}{loom_proc:>9.2f}{bare_proc:>9.2f}")
        steps_total = sum(loom_stage_s.values())
        print(f"wall time per 5-minute window: min {min(walls):.2f}s  median {statistics.median(walls):.2f}s  "
              f"max {max(walls):.2f}s  (total {sum(walls):.1f}s; steps {steps_total:.1f}s, "
              f"run overhead {sum(walls) - steps_total:.1f}s)")
        first = per_window[0][2]
        rest = per_window[1:]
        if rest:
            print("first window's steps (imports, model load) vs median of the others: "
                  + ", ".join(f"{s} {first.get(s, math.nan):.2f}/{statistics.median(p[2].get(s, 0) for p in rest):.2f}s"
                              for s in STAGES))
        print(f"rows: motion_raw {rows['raw']:,} (of {total:,}), motion_windows {rows['windows']:,} "
              f"(bare {bare_window_count:,}, {featured:,} with features), motion_significant_motion "
              f"{rows['significant_motion']:,} (bare {bare_events:,}), motion_activities {rows['activities']:,}")
        print(f"steps: loom {loom_steps:,}, bare {bare_steps:,}, generated {sum(d.steps for d in data):,}")
        print(f"activities: loom {loom_labels}; bare (classifier + cadence, no GPS) {labels}")
        print(f"classifier load (bare, not timed in classification): {load_s:.2f}s")
        # clear_refs resets ru_maxrss along with VmHWM, so the whole run's peak is the phases' max.
        whole_rss = max(setup_rss, loom_rss, bare_rss, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        print(f"peak RSS: {whole_rss:,.0f} MiB (whole process; setup {setup_rss:,.0f}); "
              f"loom runs peak {loom_rss:,.0f} MiB (+{loom_rss - loom_rss_start:,.0f} over {loom_rss_start:,.0f}), "
              f"bare peak {bare_rss:,.0f} MiB (+{bare_rss - bare_rss_start:,.0f} over {bare_rss_start:,.0f})")
        problems = []
        if rows["raw"] != total:
            problems.append(f"motion_raw has {rows['raw']} rows, expected {total}")
        if rows["activities"] != rows["windows"]:
            problems.append(f"motion_activities {rows['activities']} != motion_windows {rows['windows']}")
        if abs(rows["windows"] - bare_window_count) > 2 * args.devices:
            problems.append(f"motion_windows {rows['windows']} far from the bare loop's {bare_window_count}")
        print("row checks: " + ("; ".join(problems) if problems else "ok"))


if __name__ == "__main__":
    main()
