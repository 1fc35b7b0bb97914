"""The phone's microphone: what the person says a few times a day, spoken by espeak-ng and sent
as ~2 s WAV chunks on ``device.audio.raw`` (docs/flows/audio.md#message-fields).

The clips follow the day plan: the morning standup at work, ordering at the coffee shop, a
phone call in the evening. Their phrases are fixed, so a test (or `loom search`) can look for
them. Speech is made at generation time with the ``espeak-ng`` program (the Debian package);
without it the demo says so once and sends no audio.
"""

from __future__ import annotations

import base64
import functools
import io
import random
import shutil
import subprocess
import tempfile
import warnings
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np

from loom_assets.demo.constants import AUDIO_TOPIC
from loom_assets.demo.day import DayPlan, _local
from loom_assets.demo.messages import DemoMessage, rest_message
from loom_assets.demo.people import LOCAL_TZ, DemoDevice

ESPEAK = "espeak-ng"
# docs/messages.md#binary-payloads: mobile audio is a whole WAV file per chunk, 16 kHz mono.
SAMPLE_RATE = 16_000
CHUNK_S = 2  # phones send ~2 s chunks (as tests/integration/test_audio_flow.py does)
ROOM_NOISE = 0.002  # RMS of the room around the voice (full scale 1.0)
LEAD_S, PAUSE_S, TAIL_S = 0.8, 1.2, 1.0  # silence before, between and after sentences
LONGEST_CLIP = timedelta(minutes=5)  # every clip is shorter: one that ends before a span is not made


@dataclass(frozen=True)
class Clip:
    """Something the person says: `name`, when (local hours, or minutes into the first segment of
    `activity`), and what."""

    name: str
    activity: str  # the plan's activity the person is in while saying it
    sentences: tuple[str, ...]
    local_hours: float | None = None  # at this local time of day …
    into_segment_min: float | None = None  # … or this long after the activity's first segment starts


CLIPS: tuple[Clip, ...] = (
    # Lines up with the calendar's "Daily standup", 09:30-09:45 at Work (demo/calendar.py).
    Clip("standup", "work", (
        "Good morning everyone, here is my standup update.",
        "Yesterday I finished the upload retry change.",
        "Today I am reviewing the storage migration plan with Priya.",
        "No blockers from me.",
    ), local_hours=9.5 + 1.5 / 60),
    Clip("coffee_order", "coffee", (
        "Hi there. Could I get a large oat milk flat white please.",
        "Thank you, have a nice day.",
    ), into_segment_min=0.5),
    # Lines up with the calendar's "Call with Mum", 20:00-20:20.
    Clip("phone_call", "evening", (
        "Hi Mum, it is me. Yes, I am home now, the drive was fine.",
        "Dinner on Sunday sounds lovely, I will bring dessert.",
        "Talk to you soon, bye.",
    ), local_hours=20 + 2 / 60),
)


class MissingProgramWarning(UserWarning):
    """A program the demo needs is not installed; the demo goes on without what it makes."""


@functools.cache
def espeak_program() -> str | None:
    """The espeak-ng executable, or None after warning (once) that there will be no audio."""
    found = shutil.which(ESPEAK)
    if found is None:
        warnings.warn(f"{ESPEAK} is not installed (not on PATH): the demo's phone says nothing, so no "
                      f"device.audio.raw chunks are produced; install the Debian package {ESPEAK}",
                      MissingProgramWarning, stacklevel=2)
    return found


@functools.lru_cache(maxsize=32)
def spoken(sentence: str) -> np.ndarray:
    """`sentence` spoken by espeak-ng (US English, 150 words a minute) at SAMPLE_RATE, float32."""
    from scipy.signal import resample_poly

    program = espeak_program()
    assert program is not None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "speech.wav"
        subprocess.run([program, "-v", "en-us", "-s", "150", "-w", str(path), sentence],
                       check=True, capture_output=True, timeout=60)
        with wave.open(str(path)) as w:
            rate = w.getframerate()
            pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768
    return resample_poly(pcm, SAMPLE_RATE, rate).astype(np.float32)


def clip_audio(clip: Clip, rng: random.Random) -> np.ndarray:
    """The clip's sentences with pauses between them, in the room's faint noise, padded to whole chunks."""
    silence = [np.zeros(int(s * SAMPLE_RATE), np.float32) for s in (LEAD_S, PAUSE_S, TAIL_S)]
    parts = [silence[0]]
    for i, sentence in enumerate(clip.sentences):
        parts += ([silence[1]] if i else []) + [spoken(sentence)]
    signal = np.concatenate(parts + [silence[2]])
    per_chunk = CHUNK_S * SAMPLE_RATE
    signal = np.pad(signal, (0, -signal.size % per_chunk))
    noise = np.random.default_rng(rng.getrandbits(64)).normal(0, ROOM_NOISE, signal.size)
    return (signal + noise).astype(np.float32)


def wav_bytes(samples: np.ndarray) -> bytes:
    """A whole 16-bit mono WAV file (44-byte RIFF header)."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return out.getvalue()


def clip_start(clip: Clip, plan: DayPlan, day: date, rng: random.Random) -> datetime | None:
    """When the clip starts on the local `day` (whole seconds), or None if the person is elsewhere then."""
    if clip.local_hours is not None:
        t = _local(day, clip.local_hours)
    else:
        segment = next((s for s in plan.segments_of(day) if s.activity == clip.activity), None)
        if segment is None:
            return None
        t = segment.start + timedelta(minutes=clip.into_segment_min or 0)
    t = (t + timedelta(seconds=rng.uniform(0, 30))).replace(microsecond=0)
    return t if plan.at(t).activity == clip.activity else None


def audio_stream(
    device: DemoDevice, plan: DayPlan, seed: int, start: datetime, end: datetime
) -> Iterator[DemoMessage]:
    """``device.audio.raw`` (flat REST, docs/flows/audio.md#message-fields) of a phone: each clip
    of the day as consecutive 2 s WAV chunks. A clip's chunks do not depend on the span asked
    for, so spans that meet give each chunk exactly once."""
    if device.family != "phone" or espeak_program() is None:
        return
    day, last = start.astimezone(LOCAL_TZ).date(), end.astimezone(LOCAL_TZ).date()
    while day <= last:
        planned = plan.planned_date(day).isoformat()
        for clip in CLIPS:
            rng = random.Random(f"loom-demo-speech:{seed}:{device.index}:{planned}:{clip.name}")
            t0 = clip_start(clip, plan, day, rng)
            if t0 is None or t0 >= end or t0 + LONGEST_CLIP < start:
                continue
            samples = clip_audio(clip, rng)
            per_chunk = CHUNK_S * SAMPLE_RATE
            for k in range(samples.size // per_chunk):
                t = t0 + timedelta(seconds=k * CHUNK_S)
                if not start <= t < end:
                    continue
                data = wav_bytes(samples[k * per_chunk:(k + 1) * per_chunk])
                yield rest_message(AUDIO_TOPIC, device.device_id, t, {
                    "data": base64.b64encode(data).decode(), "sample_rate": SAMPLE_RATE, "channels": 1,
                    "format": "wav", "duration_ms": CHUNK_S * 1000,
                    "file_id": f"{clip.name}-{planned}-{k:03d}.wav", "chunk_number": k},
                    random.Random(f"loom-demo-speech-message:{seed}:{device.index}:{planned}:{clip.name}:{k}"))
        day += timedelta(days=1)
