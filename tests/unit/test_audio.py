import base64
import io
import shutil
import struct
import subprocess
import wave

import numpy as np
import pandas as pd
import pytest

from loom_assets.stages.audio import (
    CARRY_DTYPES,
    ERROR_DTYPES,
    SEGMENT_DTYPES,
    AudioDecodeError,
    SileroVad,
    VadModelError,
    VadRules,
    VadState,
    decode_chunk,
    pcm16,
    voice_segments,
)

RULES = VadRules()
SR = 16000
T0 = pd.Timestamp("2025-03-03 10:00:00.250", tz="UTC")
W0 = pd.Timestamp("2025-03-03 10:00:00", tz="UTC")
W1 = W0 + pd.Timedelta(minutes=5)
W2 = W1 + pd.Timedelta(minutes=5)
TOPIC = "device.audio.raw"

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs Debian espeak-ng")


# -- fixtures ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def vad():
    return SileroVad()


@pytest.fixture(scope="module")
def speak(tmp_path_factory):
    """Real (synthetic) speech: espeak-ng's 22050 Hz WAV, decoded to 16 kHz, leading and
    trailing silence cut off."""
    folder = tmp_path_factory.mktemp("espeak")

    def _speak(text: str) -> np.ndarray:
        path = folder / f"{abs(hash(text))}.wav"
        subprocess.run(["espeak-ng", "-w", str(path), text], check=True, capture_output=True)
        samples, rate = decode_chunk(b64(path.read_bytes()), format="wav", sample_rate=None, channels=None)
        assert rate == 22050
        loud = np.flatnonzero(np.abs(samples) > 1e-3)
        return samples[loud[0]:loud[-1] + 1]

    return _speak


@pytest.fixture(scope="module")
def conversation(speak):
    """3 s silence + 2 s speech + 3 s silence + 2 s speech + 1 s silence, over faint noise."""
    rng = np.random.default_rng(7)
    first = speak("The quick brown fox jumps over the lazy dog.")[:2 * SR]
    second = speak("Please call Stella and ask her to bring these things.")[:2 * SR]
    quiet = np.zeros(3 * SR, np.float32)
    signal = np.concatenate([quiet, first, quiet, second, np.zeros(SR, np.float32)])
    signal = signal + rng.normal(0, 0.002, signal.size).astype(np.float32)
    return quantised(signal), [(3.0, 3.0 + first.size / SR), (8.0, 8.0 + second.size / SR)]


def quantised(samples: np.ndarray) -> np.ndarray:
    """Samples as a 16-bit device would send them."""
    return np.frombuffer(pcm16(samples), "<i2").astype(np.float32) / 32768


# -- helpers ----------------------------------------------------------------------------------------
def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def wav_bytes(samples: np.ndarray, rate: int = SR, channels: int = 1, kind: str = "int16") -> bytes:
    """A WAV file of `samples` (frames x channels, or mono) in [-1, 1]."""
    frames = np.asarray(samples, dtype=np.float64).reshape(-1, channels) if np.ndim(samples) == 1 \
        else np.asarray(samples, dtype=np.float64)
    if kind in ("int16", "int8", "int32"):
        if kind == "int8":
            data = np.clip(np.rint(frames * 128 + 128), 0, 255).astype(np.uint8).tobytes()
        elif kind == "int16":
            data = np.clip(np.rint(frames * 32768), -32768, 32767).astype("<i2").tobytes()
        else:
            data = np.clip(np.rint(frames * 2**31), -2**31, 2**31 - 1).astype("<i4").tobytes()
        width = {"int8": 1, "int16": 2, "int32": 4}[kind]
        out = io.BytesIO()
        with wave.open(out, "wb") as w:
            w.setnchannels(channels)
            w.setsampwidth(width)
            w.setframerate(rate)
            w.writeframes(data)
        return out.getvalue()
    if kind == "int24":
        ints = np.clip(np.rint(frames * 2**23), -2**23, 2**23 - 1).astype("<i4").ravel()
        data = b"".join(int(v).to_bytes(3, "little", signed=True) for v in ints)
        return _riff(struct.pack("<HHIIHH", 1, channels, rate, rate * channels * 3, channels * 3, 24), data)
    data = frames.astype("<f4").tobytes()
    if kind == "float32":
        return _riff(struct.pack("<HHIIHH", 3, channels, rate, rate * channels * 4, channels * 4, 32), data)
    if kind == "extensible_float32":
        guid = struct.pack("<H", 3) + b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
        fmt = struct.pack("<HHIIHHHHI", 0xFFFE, channels, rate, rate * channels * 4, channels * 4, 32, 22, 32, 0) + guid
        return _riff(fmt, data)
    raise ValueError(kind)


def _riff(fmt: bytes, data: bytes) -> bytes:
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def chunk_rows(signal: np.ndarray, *, seconds: float = 2.0, start=T0, device="phone-1", window=W0,
               first_offset: int = 100) -> pd.DataFrame:
    """The signal as a device sends it: consecutive WAV chunks of `seconds`, base64."""
    size = int(seconds * SR)
    rows = []
    for i, a in enumerate(range(0, signal.size, size)):
        piece = signal[a:a + size]
        rows.append(chunk(piece, start + pd.Timedelta(microseconds=a * 1_000_000 // SR), device=device,
                          window=window, offset=first_offset + i))
    return pd.DataFrame(rows)


def chunk(samples, recorded_at, *, device="phone-1", window=W0, offset=0, data=None, fmt="wav", rate=SR, channels=1):
    return {
        "window_start": window, "device_id": device, "recorded_at": recorded_at, "source_topic": TOPIC,
        "source_partition": 0, "source_offset": offset, "message_id": f"m{offset}",
        "data": data if data is not None else b64(wav_bytes(samples)), "format": fmt, "sample_rate": rate,
        "channels": channels, "duration_ms": None if samples is None else len(samples) * 1000 // SR,
        "file_id": f"chunk_{offset}",
    }


def in_windows(frame: pd.DataFrame, window) -> pd.DataFrame:
    return frame.assign(window_start=window)


def run_windows(vad, windows: list[pd.DataFrame], starts: list[pd.Timestamp]):
    """Windows one after the other, each given the previous one's carry (as a table would give
    it back: bytea columns come back as memoryviews)."""
    carry, segments, errors = None, [], []
    for frame, start in zip(windows, starts, strict=True):
        result = voice_segments(frame, carry, vad, RULES, window_start=start)
        segments.append(result.segments)
        errors.append(result.errors)
        carry = result.carry.assign(**{c: result.carry[c].map(memoryview) for c in
                                       ("segment_probs", "audio", "vad_state", "chunks")})
    return pd.concat(segments, ignore_index=True), carry, pd.concat(errors, ignore_index=True)


def seconds(times: pd.Series) -> np.ndarray:
    return ((times - T0) / pd.Timedelta(seconds=1)).to_numpy(dtype=float)


def comparable(segments: pd.DataFrame) -> pd.DataFrame:
    return segments.drop(columns=["window_start"]).reset_index(drop=True)


def assert_typed(frame: pd.DataFrame, dtypes: dict[str, str]) -> None:
    assert list(frame.columns) == list(dtypes)
    expected = pd.DataFrame({c: pd.Series([], dtype=("datetime64[us, UTC]" if d.startswith("datetime") else d))
                             for c, d in dtypes.items()})
    assert frame.dtypes.to_dict() == expected.dtypes.to_dict()


# -- segments ---------------------------------------------------------------------------------------
def test_segments_lie_where_the_speech_is(vad, conversation):
    signal, speech = conversation
    result = voice_segments(chunk_rows(signal), None, vad, RULES)

    segments = result.segments
    assert len(segments) == 2, segments[["start_time", "end_time", "end_reason"]]
    np.testing.assert_allclose(seconds(segments["start_time"]), [s for s, _ in speech], atol=0.2)
    np.testing.assert_allclose(seconds(segments["end_time"]), [e for _, e in speech], atol=0.2)
    assert (segments["end_reason"] == "silence").all()
    assert (segments["mean_probability"] > 0.8).all() and (segments["max_probability"] > 0.95).all()
    assert (segments["recorded_at"] == segments["start_time"]).all()
    assert segments["segment_id"].tolist() == [f"phone-1-{t.value // 1_000_000}" for t in segments["start_time"]]
    assert (segments["sample_rate"] == SR).all() and (segments["vad_model"] == vad.version).all()
    assert (segments["window_start"] == W0).all()
    # The audio is the decoded stream's own samples over [start_time, end_time).
    for row in segments.itertuples():
        a = round((row.start_time - T0) / pd.Timedelta(seconds=1) * SR)
        audio = np.frombuffer(row.audio, "<i2")
        assert audio.size == row.duration_ms * SR // 1000
        np.testing.assert_array_equal(audio, np.frombuffer(pcm16(signal[a:a + audio.size]), "<i2"))
    # 2 s chunks from offset 100: speech at 3-5 s is in chunks 101-102, at 8-10 s in chunks 104-105.
    assert segments["first_source_offset"].tolist() == [101, 104]
    assert segments["last_source_offset"].tolist() == [102, 105]
    assert segments["chunk_count"].tolist() == [2, 2]
    assert segments["source_partition"].tolist() == [0, 0] and (segments["source_topic"] == TOPIC).all()
    assert_typed(segments, SEGMENT_DTYPES)
    # The stream is still open (the device may go on): one carry row, no segment open.
    assert len(result.carry) == 1 and pd.isna(result.carry["open_segment_start"].iloc[0])
    assert result.carry["stream_end"].iloc[0] == T0 + pd.Timedelta(seconds=signal.size / SR)
    assert result.errors.empty


@pytest.mark.parametrize("split", [1, 2, 3, 4, 5])
def test_splitting_the_chunks_across_windows_gives_the_same_segments(vad, conversation, split):
    signal, _ = conversation
    chunks = chunk_rows(signal)
    whole, whole_carry, _ = run_windows(vad, [chunks, chunks.iloc[:0]], [W0, W1])
    parts, parts_carry, _ = run_windows(
        vad, [in_windows(chunks.iloc[:split], W0), in_windows(chunks.iloc[split:], W1), chunks.iloc[:0]], [W0, W1, W2])

    assert len(whole) == 2
    pd.testing.assert_frame_equal(comparable(parts), comparable(whole))
    assert whole_carry.empty and parts_carry.empty  # the empty window closed the stream


def test_speech_across_a_window_boundary_is_one_segment(vad, conversation):
    signal, speech = conversation
    chunks = chunk_rows(signal)
    first = voice_segments(chunks.iloc[:2], None, vad, RULES)  # 0-4 s: the first speech is open
    assert first.segments.empty
    open_start = first.carry["open_segment_start"].iloc[0]
    assert abs((open_start - T0).total_seconds() - speech[0][0]) < 0.2

    second = voice_segments(in_windows(chunks.iloc[2:], W1), first.carry, vad, RULES)
    segment = second.segments.iloc[0]
    assert segment["start_time"] == open_start and segment["window_start"] == W1
    assert abs((segment["end_time"] - T0).total_seconds() - speech[0][1]) < 0.2
    assert (segment["first_source_offset"], segment["last_source_offset"], segment["chunk_count"]) == (101, 102, 2)


def test_long_speech_is_cut_at_15_seconds_and_goes_on(vad, speak):
    sentence = speak("The quick brown fox jumps over the lazy dog and runs far away into the deep green forest "
                     "where nobody can ever find him again because the trees are tall and the paths are narrow")
    talk = np.concatenate([sentence] * 3)[:20 * SR]
    signal = quantised(np.concatenate([np.zeros(SR // 2, np.float32), talk, np.zeros(SR, np.float32)]))
    segments = voice_segments(chunk_rows(signal), None, vad, RULES).segments

    assert (segments["duration_ms"] <= 15_000).all()
    cut = segments.index[segments["end_reason"] == "max_duration"]
    assert len(cut) == 1, segments[["start_time", "end_time", "end_reason"]]
    first, second = segments.loc[cut[0]], segments.loc[cut[0] + 1]
    assert 14_900 <= first["duration_ms"] <= 15_000
    assert second["start_time"] == first["end_time"]  # the pieces tile the speech
    audio = np.concatenate([np.frombuffer(segments.loc[i, "audio"], "<i2") for i in (cut[0], cut[0] + 1)])
    a = round((first["start_time"] - T0).total_seconds() * SR)
    np.testing.assert_array_equal(audio, np.frombuffer(pcm16(signal[a:a + audio.size]), "<i2"))
    assert abs((segments["end_time"].iloc[-1] - T0).total_seconds() - 20.5) < 0.2
    # Split across windows inside the cut piece, the cut lands on the same sample.
    chunks = chunk_rows(signal)
    parts, _, _ = run_windows(vad, [in_windows(chunks.iloc[:3], W0), in_windows(chunks.iloc[3:], W1)], [W0, W1])
    pd.testing.assert_frame_equal(comparable(parts), comparable(segments))


def test_a_gap_between_chunks_ends_the_stream_and_its_segment(vad, conversation):
    signal, _ = conversation
    chunks = chunk_rows(signal[:4 * SR])  # ends inside the first speech
    later = chunk(signal[8 * SR:10 * SR], T0 + pd.Timedelta(seconds=8), offset=200)
    result = voice_segments(pd.concat([chunks, pd.DataFrame([later])], ignore_index=True), None, vad, RULES)

    first = result.segments.iloc[0]
    assert first["end_reason"] == "stream_end"
    assert first["end_time"] == T0 + pd.Timedelta(seconds=4)
    assert first["last_source_offset"] == 101
    assert result.carry["stream_end"].iloc[0] == T0 + pd.Timedelta(seconds=10)


def test_a_carried_stream_no_chunk_continues_is_closed_by_the_next_window(vad, conversation):
    signal, speech = conversation
    first = voice_segments(chunk_rows(signal[:4 * SR]), None, vad, RULES)
    assert first.segments.empty and len(first.carry) == 1

    closed = voice_segments(None, first.carry, vad, RULES, window_start=W1)
    assert len(closed.segments) == 1 and closed.carry.empty
    assert closed.segments["window_start"].iloc[0] == W1
    assert abs((closed.segments["start_time"].iloc[0] - T0).total_seconds() - speech[0][0]) < 0.2
    with pytest.raises(ValueError, match="window_start"):
        voice_segments(None, first.carry, vad, RULES)


def test_a_carry_of_another_model_is_closed_not_continued(vad, conversation):
    signal, _ = conversation
    chunks = chunk_rows(signal)
    first = voice_segments(chunks.iloc[:2], None, vad, RULES)
    stale = first.carry.assign(vad_model="silero-vad-5.0-onnx")
    second = voice_segments(in_windows(chunks.iloc[2:], W1), stale, vad, RULES)
    reasons = second.segments["end_reason"].tolist()
    assert reasons[0] == "stream_end"  # the old stream's open segment, as far as it went
    assert second.segments["end_time"].iloc[0] == T0 + pd.Timedelta(seconds=4)


def test_overlapping_and_redelivered_chunks(vad, conversation):
    signal, _ = conversation
    chunks = chunk_rows(signal)
    redelivered = chunks.iloc[[1]].assign(source_offset=300)
    overlapping = chunks.iloc[[2]].assign(recorded_at=chunks["recorded_at"].iloc[2] - pd.Timedelta(seconds=1),
                                          source_offset=301)
    with_extra = pd.concat([chunks, redelivered, overlapping], ignore_index=True)
    result = voice_segments(with_extra, None, vad, RULES)
    clean = voice_segments(chunks, None, vad, RULES)

    pd.testing.assert_frame_equal(result.segments, clean.segments)
    assert result.errors[["source_offset", "error_type"]].values.tolist() == [[301, "overlapping_audio"]]
    # A redelivery of the previous window's last chunk is skipped too.
    first = voice_segments(chunks.iloc[:2], None, vad, RULES)
    again = voice_segments(in_windows(pd.concat([chunks.iloc[[1]], chunks.iloc[2:]]), W1), first.carry, vad, RULES)
    assert again.errors.empty and len(again.segments) == 2


def test_a_bad_chunk_becomes_an_error_row_and_the_others_go_on(vad, conversation):
    signal, speech = conversation
    chunks = chunk_rows(signal)
    chunks.loc[1, "data"] = "this is not base64!"
    chunks.loc[3, ["format", "data"]] = ["mp3", b64(b"ID3\x04\x00" + bytes(3000))]
    result = voice_segments(chunks, None, vad, RULES)

    errors = result.errors
    assert errors[["source_offset", "error_type"]].values.tolist() == [
        [101, "invalid_audio"], [103, "unsupported_audio_format"]]
    assert errors["device_id"].tolist() == ["phone-1", "phone-1"] and (errors["window_start"] == W0).all()
    assert errors["recorded_at"].tolist() == chunks["recorded_at"].iloc[[1, 3]].tolist()
    assert_typed(errors, ERROR_DTYPES)
    # The hole at 2-4 s ends a stream; the second speech (chunks 104-105) is found as before.
    assert abs(seconds(result.segments["start_time"]).max() - speech[1][0]) < 0.2


def test_devices_are_separate_streams(vad, conversation):
    signal, _ = conversation
    chunks = pd.concat([chunk_rows(signal, device="b"), chunk_rows(signal[:6 * SR], device="a", first_offset=500)])
    result = voice_segments(chunks, None, vad, RULES)
    assert result.segments["device_id"].tolist() == ["a", "b", "b"]
    assert result.carry["device_id"].tolist() == ["a", "b"]


def test_empty_input_gives_empty_typed_frames(vad):
    for chunks in (None, pd.DataFrame(), chunk_rows(np.zeros(0, np.float32))):
        result = voice_segments(chunks, None, vad, RULES)
        assert_typed(result.segments, SEGMENT_DTYPES)
        assert_typed(result.carry, CARRY_DTYPES)
        assert_typed(result.errors, ERROR_DTYPES)
        assert result.segments.empty and result.carry.empty and result.errors.empty


def test_carry_columns_and_types(vad, conversation):
    signal, _ = conversation
    carry = voice_segments(chunk_rows(signal[:4 * SR]), None, vad, RULES).carry
    assert_typed(carry, CARRY_DTYPES)
    row = carry.iloc[0]
    assert row["stream_samples"] == 4 * SR and row["rules_version"] == RULES.version
    assert len(row["vad_state"]) == 1280
    assert len(row["audio"]) // 4 >= row["stream_samples"] - row["segment_audio_start_sample"]
    assert len(row["chunks"]) % 32 == 0


# -- decoding ---------------------------------------------------------------------------------------
def sine(rate: int, seconds: float = 1.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return amplitude * np.sin(2 * np.pi * 440 * t)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


@pytest.mark.parametrize(("rate", "channels", "kind"), [
    (16000, 1, "int16"), (8000, 1, "int16"), (44100, 2, "int16"), (48000, 1, "int16"), (22050, 1, "int8"),
    (16000, 1, "int24"), (16000, 2, "int32"), (16000, 1, "float32"), (32000, 2, "extensible_float32"),
])
def test_wav_variants_decode_to_16_khz_mono(rate, channels, kind):
    tone = sine(rate)
    frames = np.repeat(tone[:, None], channels, axis=1)
    samples, source_rate = decode_chunk(b64(wav_bytes(frames, rate, channels, kind)), format="wav",
                                        sample_rate=None, channels=None)
    assert source_rate == rate and samples.dtype == np.float32
    assert abs(samples.size - SR) <= 1
    assert rms(samples[200:-200]) == pytest.approx(0.5 / np.sqrt(2), rel=0.02)


def test_the_wav_header_wins_over_the_row():
    samples, rate = decode_chunk(b64(wav_bytes(sine(8000), 8000)), format="WAV", sample_rate=16000, channels=2)
    assert rate == 8000 and samples.size == SR


def test_stereo_is_averaged():
    left, right = sine(16000), np.zeros(16000)
    samples, _ = decode_chunk(b64(wav_bytes(np.stack([left, right], axis=1), channels=2)), format="wav",
                              sample_rate=None, channels=None)
    assert rms(samples) == pytest.approx(0.25 / np.sqrt(2), rel=0.01)


@pytest.mark.parametrize("fmt", ["pcm", "pcm_s16le", "raw", "wav"])
def test_raw_pcm_decodes(fmt):
    raw = np.clip(np.rint(sine(24000) * 32768), -32768, 32767).astype("<i2")
    stereo = np.repeat(raw[:, None], 2, axis=1).tobytes()
    samples, rate = decode_chunk(b64(stereo), format=fmt, sample_rate=24000, channels=2)
    assert rate == 24000 and abs(samples.size - SR) <= 1
    assert rms(samples[200:-200]) == pytest.approx(0.5 / np.sqrt(2), rel=0.02)


def test_16_khz_16_bit_wav_round_trips_exactly():
    pcm = np.random.default_rng(1).integers(-32768, 32768, 5000).astype("<i2")
    samples, _ = decode_chunk(b64(wav_bytes(pcm / 32768)), format="wav", sample_rate=None, channels=None)
    assert pcm16(samples) == pcm.tobytes()


def test_base64_variants_are_read():
    raw = wav_bytes(sine(16000, 0.1))
    text = base64.encodebytes(raw).decode()  # line-wrapped at 76
    for variant in (text, "data:audio/wav;base64," + b64(raw), base64.urlsafe_b64encode(raw).decode().rstrip("="),
                    b64(raw).encode()):
        samples, _ = decode_chunk(variant, format="wav", sample_rate=None, channels=None)
        assert samples.size == 1600


def _header_only() -> bytes:
    return wav_bytes(np.zeros(0))


@pytest.mark.parametrize(("data", "fmt", "rate", "channels", "error_type"), [
    ("%%% not base64 %%%", "wav", 16000, 1, "invalid_audio"),
    ("", "wav", 16000, 1, "invalid_audio"),
    (None, "wav", 16000, 1, "invalid_audio"),
    (b64(b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00"), "wav", None, None, "invalid_audio"),
    (b64(b"RIFF\x04\x00\x00\x00WAVE"), "wav", None, None, "invalid_audio"),
    (b64(_header_only()), "wav", None, None, "invalid_audio"),
    (b64(b"\x00\x01\x02"), "pcm_s16le", 16000, 1, "invalid_audio"),
    (b64(b"\x00\x01\x02\x03\x04\x05"), "pcm", 16000, 2, "invalid_audio"),
    (b64(b"\x00\x01"), "pcm", None, 1, "invalid_audio"),
    (b64(b"ID3\x04\x00" + bytes(100)), "mp3", 16000, 1, "unsupported_audio_format"),
    (b64(b"OggS\x00\x02" + bytes(100)), "wav", 16000, 1, "unsupported_audio_format"),
    (b64(bytes(100)), "opus", 48000, 1, "unsupported_audio_format"),
    (b64(b"RIFF\x04\x00\x00\x00AVI LIST"), "wav", None, None, "unsupported_audio_format"),
    (b64(_riff(struct.pack("<HHIIHH", 2, 1, 16000, 8000, 256, 4), bytes(256))), "wav", None, None,
     "unsupported_audio_format"),
    (b64(wav_bytes(sine(96000, 0.01), 96000)), "wav", None, None, "unsupported_sample_rate"),
    (b64(bytes(200)), "pcm", 4000, 1, "unsupported_sample_rate"),
    (b64(_riff(struct.pack("<HHIIHH", 3, 1, 16000, 64000, 4, 32), np.array([np.nan], "<f4").tobytes())),
     "wav", None, None, "invalid_audio"),
])
def test_bad_chunks_raise_a_typed_error(data, fmt, rate, channels, error_type):
    with pytest.raises(AudioDecodeError) as raised:
        decode_chunk(data, format=fmt, sample_rate=rate, channels=channels)
    assert raised.value.error_type == error_type
    assert str(raised.value)


def test_a_cut_off_wav_keeps_its_whole_frames():
    raw = wav_bytes(sine(16000, 0.5))
    samples, _ = decode_chunk(b64(raw[:-1001]), format="wav", sample_rate=None, channels=None)
    assert samples.size == 8000 - 501


@pytest.mark.parametrize("size_field", [0, 0xFFFFFFFF])
def test_a_streaming_writer_s_placeholder_size_reads_to_the_end(size_field):
    raw = bytearray(wav_bytes(sine(16000, 0.25)))
    raw[40:44] = struct.pack("<I", size_field)  # the data chunk's size
    samples, _ = decode_chunk(b64(bytes(raw)), format=float("nan"), sample_rate=None, channels=None)
    assert samples.size == 4000


def test_espeak_s_stdout_wav_decodes(tmp_path):
    out = subprocess.run(["espeak-ng", "--stdout", "hello"], check=True, capture_output=True).stdout
    samples, rate = decode_chunk(b64(out), format="wav", sample_rate=None, channels=None)
    assert rate == 22050 and samples.size > 0.2 * SR


def test_a_wav_data_size_of_part_of_a_frame_is_invalid():
    raw = _riff(struct.pack("<HHIIHH", 1, 1, 16000, 32000, 2, 16), b"\x00\x01\x02")
    with pytest.raises(AudioDecodeError, match="whole number") as raised:
        decode_chunk(b64(raw), format="wav", sample_rate=None, channels=None)
    assert raised.value.error_type == "invalid_audio"


# -- the model --------------------------------------------------------------------------------------
def test_probabilities_match_silero_s_own_wrapper_and_survive_a_split(vad, speak):
    torch = pytest.importorskip("torch")
    from silero_vad.utils_vad import OnnxWrapper

    samples = np.concatenate([np.zeros(8000, np.float32), speak("Hello there, general Kenobi.")])
    samples = samples[:samples.size // 512 * 512]
    reference = OnnxWrapper(str(vad.path), force_onnx_cpu=True)
    expected = [reference(torch.from_numpy(samples[i:i + 512]), 16000).item() for i in range(0, samples.size, 512)]

    probs, _ = vad.speech_probs(samples)
    np.testing.assert_allclose(probs, expected, atol=1e-6)
    assert probs.max() > 0.9 and probs[:10].max() < 0.1
    head, state = vad.speech_probs(samples[:512 * 7])
    tail, _ = vad.speech_probs(samples[512 * 7:], VadState.from_bytes(state.to_bytes()))
    np.testing.assert_array_equal(np.concatenate([head, tail]), probs)


def test_a_missing_or_broken_model_fails_loudly_naming_the_file(tmp_path):
    with pytest.raises(VadModelError, match="nowhere.onnx"):
        SileroVad(tmp_path / "nowhere.onnx")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(VadModelError, match="broken.onnx"):
        SileroVad(broken)


def test_the_model_version_names_the_package(vad):
    assert vad.version.startswith("silero-vad-6.") and vad.version.endswith("-onnx")


def test_rules_are_consistent():
    assert RULES.min_silence_frames == 4 and RULES.max_core_frames == 466
    assert RULES.max_core_frames * 512 + 2 * RULES.pad_samples <= 15 * SR
    with pytest.raises(ValueError):
        VadRules(sample_rate=8000)
    with pytest.raises(ValueError):
        VadRules(threshold=0.3, neg_threshold=0.4)
