"""The audio flow end to end: espeak-ng speech sent as 2 s WAV chunks (as phones send them) →
`loom process` → voice segments where the speech is, its words transcribed, the environment of
every 10 s; a chunk that is not audio becomes an error row and the window completes."""

import base64
import io
import subprocess
import wave
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from scipy.signal import resample_poly

from tests.integration.test_spine import flat, invoke, produce, table

pytestmark = pytest.mark.integration

SENTENCE = "the quick brown fox jumps over the lazy dog"
RATE = 16000


def espeak(text: str, tmp_path) -> np.ndarray:
    path = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(path), text], check=True)
    with wave.open(str(path)) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768
        return resample_poly(pcm, RATE, w.getframerate()).astype(np.float32)


def wav_chunk(samples: np.ndarray) -> str:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(RATE)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return base64.b64encode(out.getvalue()).decode()


def test_speech_becomes_segments_words_and_an_environment(loom_env, tmp_path):
    rng = np.random.default_rng(0)
    speech = espeak(SENTENCE, tmp_path)
    silence = np.zeros(3 * RATE, np.float32)
    signal = np.concatenate([silence, speech, silence]) + rng.normal(0, 0.002, 6 * RATE + speech.size).astype(np.float32)
    start = (datetime.now(UTC) - timedelta(minutes=2)).replace(microsecond=0)
    chunk = 2 * RATE
    messages = [
        ("device.audio.raw", flat(start + timedelta(seconds=i / RATE), data=wav_chunk(signal[i:i + chunk]),
                                  sample_rate=RATE, channels=1, format="wav",
                                  duration_ms=int(1000 * min(chunk, signal.size - i) / RATE)))
        for i in range(0, signal.size, chunk)
    ]
    messages.append(("device.audio.raw", flat(start + timedelta(minutes=1), data=base64.b64encode(b"ID3 mp3").decode(),
                                              sample_rate=RATE)))
    produce(loom_env["bootstrap"], messages)
    invoke("process", "--through-now", "--flow", "audio")
    url = loom_env["database_url"]

    segments = table(url, "audio_voice_segments", order="start_time")
    assert len(segments) == 1
    segment = segments.iloc[0]
    speech_start = start + timedelta(seconds=3)
    assert abs((segment["start_time"] - speech_start).total_seconds()) < 0.3
    assert abs(segment["duration_ms"] - 1000 * speech.size / RATE) < 600
    assert segment["audio_uri"].endswith(".wav") and segment["chunk_count"] >= 2

    [transcript] = table(url, "audio_transcripts", order="recorded_at").itertuples()
    heard = transcript.text.lower().strip(".").split()
    assert sum(w in heard for w in SENTENCE.split()) >= 7
    assert transcript.word_count == len(transcript.words) and transcript.words[0]["start"] >= 0
    # The full-text index answers.
    hits = table(url, "audio_transcripts WHERE to_tsvector('english', text) @@ plainto_tsquery('english', 'lazy dogs')",
                 order="recorded_at")
    assert len(hits) == 1

    environment = table(url, "audio_environment", order="recorded_at")
    assert len(environment) >= 1 and set(environment["environment"]) <= {"indoor", "quiet", "unknown", "outdoor"}

    errors = table(url, "processing_errors", order="source_offset")
    assert errors[["flow", "error_type"]].values.tolist() == [["audio/voice_segments", "unsupported_audio_format"]]

    # The VAD stream the window leaves is written with its segments, and the window records the
    # state it read (the carry of the window before it: none here), so a re-run of it would
    # re-run the next window if that stream changed.
    carried = table(url, "audio_vad_carry", order="device_id")
    assert len(carried) >= 1 and set(carried["window_start"]) == set(segments["window_start"])
    written = table(url, "loom_stage_windows WHERE table_name = 'audio_voice_segments'", order="window_start")
    assert len(written) == 1 and written["state_read"].notna().all() and not written["state_stale"].any()
