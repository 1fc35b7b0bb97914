"""Audio: decoding device chunks and voice-activity segments (docs/flows/audio.md#voice_segments,
docs/flows/audio.md#message-fields, docs/messages.md#binary-payloads; docs/architecture.md#components).

`voice_segments` is stage `voice_activity_detection`: per device, the window's audio chunks are
decoded to 16 kHz mono, joined into continuous streams, run through Silero VAD frame by frame and
cut into speech segments, each with its own 16 kHz PCM audio (what speech-to-text and the
environment classifier read, docs/flows/audio.md#stages: speech-to-text reads the VAD's speech segments).

A stream, and a segment in it, can go on across chunks and windows: what the next window needs
(the open segment's audio, the model's recurrent state, the last partial frame, the state machine)
is returned as a small `carry` frame and passed back in by the next window. The same chunks give
the same segments however they are split across windows: frames sit at fixed positions of the
stream, every chunk is decoded on its own, and the model state is carried as exact float32 bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import importlib.metadata
import importlib.resources
import io
import math
import struct
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np
import pandas as pd
from scipy import signal

from loom_assets.stages.frames import typed_frame, utc, with_columns


# -- rules ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VadRules:
    """Every number of voice activity detection, with its reason. Bump `version` when one changes."""

    version: str = "1"
    # docs/flows/audio.md#voice_segments: silero-vad at 16000 Hz, threshold 0.5: a frame with p >=
    # 0.5 is speech.
    threshold: float = 0.5
    # Once in speech, only p < 0.35 counts as silence (Silero's own hysteresis, threshold - 0.15),
    # so a word whose probability wobbles around 0.5 is not cut into pieces.
    neg_threshold: float = 0.35
    # docs/flows/audio.md#voice_segments: min_speech_duration_ms 250. A shorter blip (a click, a
    # cough) is no segment. Counted on the segment's speech frames, before padding (rounded up to 8
    # frames = 256 ms).
    min_speech_ms: int = 250
    # docs/flows/audio.md#voice_segments: max_speech_duration_s 15. Longer speech is cut into pieces
    # of at most 15 s, padding included, each emitted as soon as it is complete
    # (docs/flows/audio.md#transcripts: the STT model takes at most 30 s). Silero's look-back for a
    # pause never fires with these numbers (a pause long enough to look for already ends the
    # segment), so a cut is a plain cut at a frame edge.
    max_segment_seconds: float = 15.0
    # A segment ends after 100 ms of silence (rounded up to 4 frames = 128 ms): Loom v2's
    # onnx-vad (what ran last) and Silero's default. Longer and a segment runs on across the
    # pauses between sentences and soon meets the 15 s cut; shorter and it splits words at
    # their stop consonants.
    min_silence_ms: int = 100
    # Each segment is padded by 30 ms of audio on each side (Silero's default), so the onset and
    # release of its first and last words, which score below the threshold, are in its audio.
    # A pad never reaches into the previous segment or across a cut.
    speech_pad_ms: int = 30
    # Silero's native rate and window: 512 samples (32 ms) at 16 kHz, plus 64 samples of context.
    sample_rate: int = 16000
    frame_samples: int = 512
    # Two chunks are one continuous stream when the next starts within 50 ms of the previous
    # one's end (device clocks stamp chunks to the millisecond and jitter by a few ms). A larger
    # gap starts a new stream and ends any open segment; a chunk starting more than 50 ms before
    # the end of audio already taken is an `overlapping_audio` error row.
    contiguity_ms: int = 50
    # docs/flows/audio.md#message-fields: sample_rate 8000-48000 Hz.
    min_input_rate: int = 8000
    max_input_rate: int = 48000

    def __post_init__(self) -> None:
        if (self.sample_rate, self.frame_samples) != (16000, 512):
            raise ValueError("VadRules: Silero VAD runs 512-sample frames at 16 kHz")
        if not 0 < self.neg_threshold <= self.threshold < 1:
            raise ValueError("VadRules: need 0 < neg_threshold <= threshold < 1")
        if self.max_core_frames < 1:
            raise ValueError("VadRules: max_segment_seconds is shorter than one frame plus padding")

    @property
    def pad_samples(self) -> int:
        return self.sample_rate * self.speech_pad_ms // 1000

    @property
    def min_speech_samples(self) -> int:
        return self.sample_rate * self.min_speech_ms // 1000

    @property
    def min_silence_frames(self) -> int:
        """Frames of silence that end a segment: 100 ms -> 4 frames."""
        return max(1, math.ceil(self.sample_rate * self.min_silence_ms / 1000 / self.frame_samples))

    @property
    def max_core_frames(self) -> int:
        """Most speech frames in one segment, so that with both pads it stays within the maximum
        (15 s -> 466 frames = 14.912 s + 2 x 30 ms)."""
        max_samples = int(round(self.max_segment_seconds * self.sample_rate))
        return (max_samples - 2 * self.pad_samples) // self.frame_samples


RULES = VadRules()


# -- decoding -------------------------------------------------------------------------------------
class AudioDecodeError(ValueError):
    """A chunk that cannot become audio. `error_type` is a stable, countable label:
    invalid_audio (not base64, empty, truncated or malformed), unsupported_audio_format (a codec
    or container other than PCM WAV / raw s16le), unsupported_sample_rate (outside 8-48 kHz)."""

    def __init__(self, error_type: str, message: str):
        super().__init__(message)
        self.error_type = error_type


WAV_FORMATS = frozenset({"wav", "wave", "audio/wav", "audio/x-wav"})
RAW_FORMATS = frozenset({"pcm", "pcm_s16le", "s16le", "raw"})

# Container signatures recognised only to name them in the error (bytes, offset, name).
_CONTAINERS = (
    (b"ID3", 0, "mp3"), (b"OggS", 0, "ogg/opus"), (b"fLaC", 0, "flac"), (b"ftyp", 4, "mp4/m4a/aac"),
    (b"\x1aE\xdf\xa3", 0, "webm/matroska"), (b"#!AMR", 0, "amr"), (b"FORM", 0, "aiff"), (b"caff", 0, "caf"),
)
_PCM, _FLOAT, _EXTENSIBLE = 0x0001, 0x0003, 0xFFFE


def decode_chunk(
    data_b64: Any, *, format: str | None, sample_rate: int | None, channels: int | None,
    rules: VadRules = RULES,
) -> tuple[np.ndarray, int]:
    """A chunk's base64 text -> (float32 mono samples at 16 kHz in [-1, 1], its own sample rate).

    - Bytes starting with a RIFF/WAVE header are a WAV file whatever `format` says (docs/messages.md#binary-payloads:
      mobile chunks are whole WAV files): PCM 8/16/24/32-bit integer or 32/64-bit float, plain or
      WAVE_FORMAT_EXTENSIBLE. The header's rate and channels win over the row's. A data chunk
      claiming more bytes than are there (a streaming writer's placeholder, a cut-off file) is
      read as far as it goes.
    - `format` pcm / pcm_s16le / s16le / raw: headerless 16-bit little-endian PCM at the row's
      `sample_rate` and `channels` (`channels` None means 1, the wire default of
      docs/messages.md#payload-fields).
    - `format` wav (or None, the wire default) without a RIFF header is read as raw s16le too, as
      the old silero service did; unless the bytes are another container (mp3, ogg, ...).
    Channels are averaged; rates other than 16 kHz go through `scipy.signal.resample_poly`.
    Raises `AudioDecodeError`.
    """
    return decode_audio(_base64_bytes(data_b64), format=format, sample_rate=sample_rate, channels=channels,
                        rules=rules)


def decode_audio(
    raw: bytes, *, format: str | None, sample_rate: int | None, channels: int | None, rules: VadRules = RULES,
) -> tuple[np.ndarray, int]:
    """`decode_chunk` of the bytes themselves (as the blob store keeps them)."""
    raw = bytes(raw)
    if not raw:
        raise AudioDecodeError("invalid_audio", "no audio data (0 bytes)")
    name = format.strip().lower() if isinstance(format, str) and format.strip() else "wav"
    if raw[:4] == b"RIFF" and raw[8:12] == b"WAVE":
        frames, rate = _wav(raw)
    elif raw[:4] == b"RIFF":
        raise AudioDecodeError("unsupported_audio_format", f"a RIFF {raw[8:12]!r} file is not WAV audio")
    elif name in RAW_FORMATS or name in WAV_FORMATS:
        container = next((label for magic, at, label in _CONTAINERS if raw[at:at + len(magic)] == magic), None)
        if container is not None:
            raise AudioDecodeError("unsupported_audio_format", f"format {name!r} but the bytes are {container}")
        frames, rate = _raw_s16le(raw, sample_rate, channels)
    else:
        raise AudioDecodeError("unsupported_audio_format",
                               f"format {name!r} is not supported (WAV or raw 16-bit PCM only)")
    if not rules.min_input_rate <= rate <= rules.max_input_rate:
        raise AudioDecodeError("unsupported_sample_rate",
                               f"sample rate {rate} Hz is outside {rules.min_input_rate}-{rules.max_input_rate} Hz")
    if frames.shape[0] == 0:
        raise AudioDecodeError("invalid_audio", "the chunk holds no samples")
    if not np.isfinite(frames).all():
        raise AudioDecodeError("invalid_audio", "the chunk holds non-finite float samples")
    mono = frames.mean(axis=1) if frames.shape[1] > 1 else frames[:, 0]
    return _resampled(mono, rate, rules.sample_rate).astype(np.float32, copy=False), rate


def _base64_bytes(data: Any) -> bytes:
    if isinstance(data, (bytes, bytearray, memoryview)):
        try:
            data = bytes(data).decode("ascii")
        except UnicodeDecodeError:
            raise AudioDecodeError("invalid_audio", "audio data is binary, not base64 text") from None
    if not isinstance(data, str) or not data.strip():
        raise AudioDecodeError("invalid_audio", "no audio data (0 bytes)")
    text = data.strip()
    if text.startswith("data:") and "," in text:  # a data URL: data:audio/wav;base64,...
        text = text.split(",", 1)[1]
    text = "".join(text.split())  # line-wrapped base64
    if "-" in text or "_" in text:  # the URL-safe alphabet
        text = text.replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        raise AudioDecodeError("invalid_audio", f"audio data is not valid base64: {error}") from None
    if not raw:
        raise AudioDecodeError("invalid_audio", "no audio data (0 bytes)")
    return raw


def _wav(raw: bytes) -> tuple[np.ndarray, int]:
    """(frames x channels float64, sample rate) of a RIFF/WAVE file, parsed by hand (the stdlib
    `wave` of Python 3.11 reads integer PCM only)."""
    fmt: tuple[int, int, int, int] | None = None
    pos = 12
    while pos + 8 <= len(raw):
        chunk_id, size = raw[pos:pos + 4], struct.unpack_from("<I", raw, pos + 4)[0]
        body = pos + 8
        if chunk_id == b"fmt ":
            if size < 16 or body + 16 > len(raw):
                raise AudioDecodeError("invalid_audio", "truncated WAV header (fmt chunk)")
            tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", raw, body)
            if tag == _EXTENSIBLE:
                if size < 40 or body + 40 > len(raw):
                    raise AudioDecodeError("invalid_audio", "truncated WAV header (extensible fmt chunk)")
                tag = struct.unpack_from("<H", raw, body + 24)[0]  # first two bytes of the sub-format GUID
            fmt = (tag, channels, rate, bits)
        elif chunk_id == b"data":
            if fmt is None:
                raise AudioDecodeError("invalid_audio", "WAV data chunk before its fmt chunk")
            if size == 0 or body + size > len(raw):  # a streaming writer's placeholder, or cut off
                return _wav_samples(raw[body:], None, *fmt), fmt[2]
            return _wav_samples(raw[body:body + size], size, *fmt), fmt[2]
        pos = body + size + (size & 1)  # chunks are word-aligned
    if fmt is None:
        raise AudioDecodeError("invalid_audio", "truncated WAV header (no fmt chunk)")
    raise AudioDecodeError("invalid_audio", "WAV file without a data chunk")


def _wav_samples(data: bytes, claimed: int | None, tag: int, channels: int, rate: int, bits: int) -> np.ndarray:
    """Frames x channels of a data chunk. `claimed` None: the size field could not be trusted and
    `data` is the rest of the file, read as far as it holds whole frames."""
    if channels < 1 or rate < 1:
        raise AudioDecodeError("invalid_audio", f"WAV header says {channels} channels at {rate} Hz")
    if tag == _PCM and bits in (8, 16, 24, 32):
        kind = f"int{bits}"
    elif tag == _FLOAT and bits in (32, 64):
        kind = f"float{bits}"
    else:
        names = {0x0002: "ADPCM", 0x0006: "A-law", 0x0007: "mu-law", 0x0011: "IMA ADPCM", 0x0055: "MP3"}
        raise AudioDecodeError("unsupported_audio_format",
                               f"WAV codec {names.get(tag, hex(tag))} at {bits} bits is not supported")
    block = channels * bits // 8
    if claimed is not None and claimed % block:
        raise AudioDecodeError("invalid_audio",
                               f"WAV data of {claimed} bytes is not a whole number of {block}-byte frames")
    data = data[:len(data) - len(data) % block]
    if kind == "int8":
        values = (np.frombuffer(data, np.uint8).astype(np.float64) - 128.0) / 128.0
    elif kind == "int16":
        values = np.frombuffer(data, "<i2") / 32768.0
    elif kind == "int24":
        b = np.frombuffer(data, np.uint8).reshape(-1, 3).astype(np.int32)
        values = (((b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)) << 8) >> 8) / float(1 << 23)
    elif kind == "int32":
        values = np.frombuffer(data, "<i4") / float(1 << 31)
    else:
        values = np.frombuffer(data, "<f4" if kind == "float32" else "<f8").astype(np.float64)
    return values.reshape(-1, channels)


def _raw_s16le(raw: bytes, sample_rate: int | None, channels: int | None) -> tuple[np.ndarray, int]:
    rate = _int_or_none(sample_rate)
    if rate is None:
        raise AudioDecodeError("invalid_audio", "raw PCM without a sample_rate")
    count = _int_or_none(channels)
    count = 1 if count is None else count  # docs/messages.md#payload-fields: channels=1 on the wire
    if count < 1:
        raise AudioDecodeError("invalid_audio", f"raw PCM with {count} channels")
    if len(raw) % (2 * count):
        raise AudioDecodeError("invalid_audio",
                               f"raw 16-bit PCM of {len(raw)} bytes is not a whole number of {2 * count}-byte frames")
    return (np.frombuffer(raw, "<i2") / 32768.0).reshape(-1, count), rate


def _int_or_none(value: Any) -> int | None:
    try:
        return None if value is None or pd.isna(value) else int(value)
    except (TypeError, ValueError):
        return None


def _resampled(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return samples
    g = math.gcd(rate, target)
    return signal.resample_poly(samples, target // g, rate // g)


def as_wav(pcm: bytes, sample_rate: int = 16_000) -> bytes:
    """16-bit mono PCM as a WAV file (how segment audio is kept: any player opens it)."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm)
    return out.getvalue()


def pcm16(samples: np.ndarray) -> bytes:
    """Float samples in [-1, 1] -> 16-bit little-endian PCM (clipped, rounded)."""
    scaled = np.clip(np.rint(np.asarray(samples, dtype=np.float64) * 32768.0), -32768, 32767)
    return scaled.astype("<i2").tobytes()


# -- the model ------------------------------------------------------------------------------------
class VadModelError(RuntimeError):
    """The VAD model cannot be loaded or run."""


@dataclass(frozen=True)
class VadState:
    """Silero's recurrent state between frames: the LSTM state (2, 1, 128) and the last 64
    samples of the previous frame (its context). Stored as 1280 float32 little-endian bytes."""

    lstm: np.ndarray
    context: np.ndarray

    @classmethod
    def initial(cls) -> VadState:
        return cls(np.zeros((2, 1, 128), np.float32), np.zeros(SileroVad.context_samples, np.float32))

    def to_bytes(self) -> bytes:
        return np.concatenate([self.lstm.ravel(), self.context]).astype("<f4").tobytes()

    @classmethod
    def from_bytes(cls, raw: bytes) -> VadState:
        values = np.frombuffer(bytes(raw), "<f4").astype(np.float32)
        if values.size != 256 + SileroVad.context_samples:
            raise ValueError(f"a VAD state is {4 * (256 + SileroVad.context_samples)} bytes, not {len(raw)}")
        return cls(values[:256].reshape(2, 1, 128).copy(), values[256:].copy())


class VoiceActivityModel(Protocol):
    version: str

    def speech_probs(self, samples_16k: np.ndarray, state: VadState | None = None) -> tuple[np.ndarray, VadState]: ...


class SileroVad:
    """Silero VAD (the ONNX model inside the silero-vad wheel) run with onnxruntime on the CPU.

    One InferenceSession, one thread (docs/architecture.md#models-inside-packages: ~5x faster than
    the JIT model; a window runs per device, one frame after the other, so more threads would only
    wait). Load it once.
    """

    frame_samples = 512    # 32 ms at 16 kHz: Silero's window
    context_samples = 64   # the end of the previous frame, prepended to each frame
    sample_rate = 16000

    def __init__(self, path: str | Path | None = None):
        import onnxruntime

        bundled = path is None
        if bundled:
            path = importlib.resources.files("silero_vad") / "data" / "silero_vad.onnx"
        self.path = Path(str(path))
        if not self.path.is_file():
            raise VadModelError(f"Silero VAD model file not found: {self.path}")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        try:
            self.session = onnxruntime.InferenceSession(
                str(self.path), sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own exception types
            raise VadModelError(f"cannot load the Silero VAD model {self.path}: {error}") from error
        names = {i.name for i in self.session.get_inputs()}
        if names != {"input", "state", "sr"}:
            raise VadModelError(f"{self.path} is not a Silero VAD v5+ model (inputs {sorted(names)})")
        if bundled:
            self.version = f"silero-vad-{importlib.metadata.version('silero-vad')}-onnx"
        else:
            self.version = f"silero-vad-onnx-{hashlib.sha256(self.path.read_bytes()).hexdigest()[:12]}"
        self._sr = np.array(self.sample_rate, dtype=np.int64)

    def speech_probs(self, samples_16k: np.ndarray, state: VadState | None = None) -> tuple[np.ndarray, VadState]:
        """Speech probability of each whole 512-sample frame of `samples_16k` (a last partial
        frame is left out: the caller keeps it for later), and the state after the last frame.
        `state` None starts a stream (zeros, as Silero's reset_states)."""
        samples = np.asarray(samples_16k, dtype=np.float32).ravel()
        state = state or VadState.initial()
        count = samples.size // self.frame_samples
        probs = np.empty(count, dtype=np.float32)
        lstm, context = state.lstm, state.context
        for i in range(count):
            frame = samples[i * self.frame_samples:(i + 1) * self.frame_samples]
            x = np.concatenate([context, frame])[None, :]
            out, lstm = self.session.run(None, {"input": x, "state": lstm, "sr": self._sr})
            probs[i] = out[0, 0]
            context = frame[-self.context_samples:]
        return probs, VadState(np.asarray(lstm, dtype=np.float32), np.array(context, dtype=np.float32))


# -- frames ---------------------------------------------------------------------------------------
CHUNK_COLUMNS = (
    "window_start", "device_id", "recorded_at", "source_topic", "source_partition", "source_offset",
    "message_id", "data", "format", "sample_rate", "channels", "duration_ms", "file_id",
    "audio_bytes",  # the chunk's bytes themselves, when the caller has them (else `data`, base64)
)

_TIME = "datetime64[us, UTC]"
SEGMENT_DTYPES: dict[str, str] = {
    "window_start": _TIME,          # the window that emitted the segment
    "device_id": "str",
    "recorded_at": _TIME,           # = start_time
    "segment_id": "str",            # "<device_id>-<start_time in epoch ms>"
    "start_time": _TIME,            # first sample of `audio` (padding included)
    "end_time": _TIME,              # end of its last sample
    "duration_ms": "Int64",         # of `audio`: samples / 16
    "mean_probability": "float64",  # over the segment's speech frames
    "max_probability": "float64",
    "end_reason": "str",            # silence | max_duration | stream_end
    "sample_rate": "Int64",         # 16000
    "audio": "object",              # bytes: 16-bit little-endian PCM, mono, 16 kHz
    "source_topic": "str",
    "source_partition": "Int64",    # of the first chunk
    "first_source_offset": "Int64", # chunk holding the first sample
    "last_source_offset": "Int64",  # chunk holding the last sample
    "chunk_count": "Int64",         # chunks the audio spans
    "vad_model": "str",             # e.g. silero-vad-6.2.3-onnx
}

CARRY_DTYPES: dict[str, str] = {
    "window_start": _TIME,          # the window that wrote the row
    "device_id": "str",
    "source_topic": "str",
    "vad_model": "str",             # the model and rules the state belongs to: a carry of
    "rules_version": "str",         # another one is closed, not continued
    "stream_end": _TIME,            # end of the device's audio so far (last chunk's end)
    "stream_samples": "Int64",      # 16 kHz samples in the stream so far
    "open_segment_start": _TIME,    # NaT when no segment is open
    "segment_start_sample": "Int64",        # stream position of the open segment's first speech frame
    "segment_audio_start_sample": "Int64",  # ... of its first audio sample (padding included)
    "segment_after_cut": "boolean",         # it continues a segment cut at the maximum length
    "silence_start_sample": "Int64",        # where a not yet long enough silence began, or <NA>
    "last_segment_end_sample": "Int64",     # end of the stream's last emitted segment (pads stop there)
    "segment_probs": "object",      # bytes: float32 LE probability of each frame of the open segment
    "audio": "object",              # bytes: float32 LE samples [stream_samples - n, stream_samples)
    "vad_state": "object",          # bytes: VadState.to_bytes()
    "chunks": "object",             # bytes: int64 LE rows (stream position, recorded_at µs,
                                    # source_partition, source_offset) of the chunks `audio` spans
}

ERROR_DTYPES: dict[str, str] = {
    "window_start": _TIME,
    "device_id": "str",
    "recorded_at": _TIME,
    "source_topic": "str",
    "source_partition": "Int64",
    "source_offset": "Int64",
    "message_id": "str",
    "error_type": "str",            # invalid_audio | unsupported_audio_format | unsupported_sample_rate | overlapping_audio
    "error_message": "str",
}


class VadResult(NamedTuple):
    segments: pd.DataFrame  # SEGMENT_DTYPES
    carry: pd.DataFrame     # CARRY_DTYPES: pass to the next window
    errors: pd.DataFrame    # ERROR_DTYPES: chunks that gave no audio


# -- streams --------------------------------------------------------------------------------------
@dataclass
class _Stream:
    """One device's continuous audio at 16 kHz, and the segment state machine over its frames."""

    device_id: str
    source_topic: str
    samples: int = 0                # stream length so far
    frames: int = 0                 # frames through the model: every whole frame once it is there
    audio: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # its last samples
    chunks: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.int64))
    end_us: int = 0                 # event time of the stream's end
    state: VadState | None = None
    triggered: bool = False
    seg_start: int = 0              # first speech frame's position
    seg_audio_start: int = 0        # first audio sample (after padding)
    after_cut: bool = False
    silence: int | None = None      # position where the current silence began
    floor: int = 0                  # end of the last emitted segment
    probs: list[float] = field(default_factory=list)

    @property
    def origin(self) -> int:
        return self.samples - self.audio.size


@dataclass(frozen=True)
class _Out:
    window_start: pd.Timestamp
    vad_model: str
    rules: VadRules
    rows: list[dict]


def voice_segments(
    chunks: pd.DataFrame | None,
    carry: pd.DataFrame | None,
    vad: VoiceActivityModel,
    rules: VadRules = RULES,
    *,
    window_start: Any = None,
) -> VadResult:
    """Speech segments of one window's audio chunks (`SEGMENT_DTYPES`), the carry for the next
    window (`CARRY_DTYPES`) and the chunks that gave no audio (`ERROR_DTYPES`).

    Per device, chunks are taken in `recorded_at` order and decoded (`decode_chunk`). A chunk
    starting within `contiguity_ms` of the stream's end continues it; a later one ends the stream
    (and any open segment, `end_reason` stream_end) and starts a new one; an earlier one is an
    `overlapping_audio` error, except an exact redelivery (the `recorded_at` of the stream's last
    chunk), which is skipped. Times inside a chunk are its `recorded_at` plus samples / 16 kHz.

    Frames of 512 samples at fixed stream positions go through `vad`. Not in speech, a frame with
    p >= threshold starts a segment; in speech, p >= threshold clears a silence and p <
    neg_threshold starts one; a silence of `min_silence_frames` ends the segment at the silence's
    start. A segment reaching `max_core_frames` is cut there and speech goes on in a new one
    (or, when a silence has begun, ends at it). Segments of fewer than `min_speech_ms` of speech
    frames are dropped (not the pieces after a cut). Audio is padded by `speech_pad_ms` each side.

    `carry` is the previous window's `carry` (one row per device whose stream was open at its
    end). A carried stream that no chunk of this window continues is closed here, so an open
    segment is emitted at the latest one window after its audio stopped. Segments still open at
    the end of the window's audio are not emitted; they are in the returned carry.
    `window_start` defaults to the chunks' (one call is one window); it is needed when there are
    no chunks but a carry to close.
    """
    chunks = with_columns(chunks, CHUNK_COLUMNS)
    window_start = _window_start(chunks, window_start, carry)
    out = _Out(window_start, vad.version, rules, [])
    errors: list[dict] = []
    carry_rows: list[dict] = []

    streams: dict[str, _Stream] = {}
    for stream, model, version in _carried_streams(carry, rules):
        if (model, version) == (vad.version, rules.version):
            streams[stream.device_id] = stream
        else:  # another model or rules: its state means nothing to this one
            _close(stream, out)

    chunks = chunks.assign(recorded_at=utc(chunks["recorded_at"]))
    ordered = chunks.sort_values(["device_id", "recorded_at", "source_partition", "source_offset"],
                                 kind="stable", na_position="last")
    by_device = {d: g for d, g in ordered.groupby("device_id", sort=False, dropna=True)}
    for row in ordered[ordered["device_id"].isna() | ordered["recorded_at"].isna()].to_dict("records"):
        errors.append(_error_row(window_start, row, "invalid_audio", "chunk without device_id or recorded_at"))

    tolerance = rules.contiguity_ms * 1000
    for device_id in sorted(set(streams) | set(by_device)):
        stream = streams.get(device_id)
        extended = False
        rows = by_device.get(device_id)
        for row in ([] if rows is None else rows[rows["recorded_at"].notna()].to_dict("records")):
            try:
                options = dict(format=row["format"], sample_rate=row["sample_rate"], channels=row["channels"],
                               rules=rules)
                samples, _ = (decode_audio(row["audio_bytes"], **options) if row.get("audio_bytes") is not None
                              else decode_chunk(row["data"], **options))
            except AudioDecodeError as error:
                errors.append(_error_row(window_start, row, error.error_type, str(error)))
                continue
            start_us = _epoch_us(row["recorded_at"])
            if stream is not None:
                if stream.chunks.size and start_us == int(stream.chunks[-1, 1]):
                    continue  # a redelivered chunk (the raw table's key: device_id, recorded_at)
                gap = start_us - stream.end_us
                if gap < -tolerance:
                    errors.append(_error_row(
                        window_start, row, "overlapping_audio",
                        f"chunk starts {-gap / 1000:.0f} ms before the end of the device's audio already taken"))
                    continue
                if gap > tolerance:
                    _close(stream, out)
                    stream = None
            if stream is None:
                topic = row["source_topic"]
                stream = _Stream(device_id=device_id, source_topic=topic if isinstance(topic, str) else "")
            _append(stream, samples, start_us, row)
            _advance(stream, vad, out)
            extended = True
        if stream is None:
            continue
        if extended:
            carry_rows.append(_carry_row(stream, out))
        else:
            _close(stream, out)

    return VadResult(
        typed_frame(out.rows, SEGMENT_DTYPES),
        typed_frame(carry_rows, CARRY_DTYPES),
        typed_frame(errors, ERROR_DTYPES),
    )


def _window_start(chunks: pd.DataFrame, given: Any, carry: pd.DataFrame | None) -> pd.Timestamp:
    if given is not None:
        at = pd.Timestamp(given)
        return (at.tz_localize("UTC") if at.tzinfo is None else at.tz_convert("UTC")).as_unit("us")
    starts = utc(chunks["window_start"]).dropna()
    if len(starts):
        return starts.max()
    if carry is not None and len(carry):
        raise ValueError("voice_segments: window_start is needed to close carried streams when there are no chunks")
    return pd.NaT


def _epoch_us(at: Any) -> int:
    return pd.Timestamp(at).value // 1000  # .value is nanoseconds whatever the unit


def _append(stream: _Stream, samples: np.ndarray, start_us: int, row: dict) -> None:
    part, offset = _int_or_none(row["source_partition"]), _int_or_none(row["source_offset"])
    anchor = np.array([[stream.samples, start_us, -1 if part is None else part, -1 if offset is None else offset]],
                      dtype=np.int64)
    stream.chunks = np.concatenate([stream.chunks, anchor])
    stream.audio = np.concatenate([stream.audio, samples.astype(np.float32, copy=False)])
    stream.samples += samples.size
    stream.end_us = start_us + _duration_us(samples.size)


def _duration_us(samples: int) -> int:
    """Microseconds of `samples` at 16 kHz (rounded down)."""
    return samples * 1_000_000 // 16000


def _advance(stream: _Stream, vad: VoiceActivityModel, out: _Out) -> None:
    """Run the model over the stream's new whole frames and the state machine over their probs."""
    frame = out.rules.frame_samples
    done, total = stream.frames, stream.samples // frame
    if total > done:
        a = done * frame - stream.origin
        probs, stream.state = vad.speech_probs(stream.audio[a:a + (total - done) * frame], stream.state)
        if len(probs) != total - done:
            raise VadModelError(f"{vad.version} gave {len(probs)} probabilities for {total - done} frames")
        for i, p in enumerate(probs):
            _step(stream, done + i, float(p), out)
        stream.frames = total
    _trim(stream, out.rules)


def _step(s: _Stream, f: int, p: float, out: _Out) -> None:
    rules, frame = out.rules, out.rules.frame_samples
    at = f * frame
    if not s.triggered:
        if p >= rules.threshold:
            s.triggered, s.after_cut, s.silence, s.probs = True, False, None, [p]
            s.seg_start, s.seg_audio_start = at, max(s.floor, at - rules.pad_samples, 0)
        return
    if p >= rules.threshold:
        s.silence = None
    elif p < rules.neg_threshold and s.silence is None:
        s.silence = at
    if s.silence is not None and at + frame - s.silence >= rules.min_silence_frames * frame:
        _end(s, s.silence, "silence", out)
        return
    if at - s.seg_start >= rules.max_core_frames * frame:
        if s.silence is not None:  # a pause has begun: end there rather than cut
            _end(s, s.silence, "max_duration", out)
            return
        _emit(s, s.seg_audio_start, at, s.probs, "max_duration", out)
        s.floor = at
        s.seg_start, s.seg_audio_start, s.after_cut, s.probs = at, at, True, [p]
        return
    s.probs.append(p)


def _end(s: _Stream, core_end: int, reason: str, out: _Out) -> None:
    """End the open segment's speech at stream position `core_end` (padded, if audio is there)."""
    rules = out.rules
    speech = core_end - s.seg_start
    if s.after_cut or speech >= rules.min_speech_samples:
        end = min(core_end + rules.pad_samples, s.samples)
        frames = max(1, -(-speech // rules.frame_samples))
        _emit(s, s.seg_audio_start, end, s.probs[:frames], reason, out)
        s.floor = end
    s.triggered, s.silence, s.probs = False, None, []


def _close(s: _Stream, out: _Out) -> None:
    """The stream is over: an open segment ends at its silence or at the stream's end."""
    if s.triggered:
        if s.silence is not None:
            _end(s, s.silence, "stream_end", out)
        else:
            _end_at_stream_end(s, out)


def _end_at_stream_end(s: _Stream, out: _Out) -> None:
    speech = s.samples - s.seg_start
    if s.after_cut or speech >= out.rules.min_speech_samples:
        _emit(s, s.seg_audio_start, s.samples, s.probs, "stream_end", out)
        s.floor = s.samples
    s.triggered, s.silence, s.probs = False, None, []


def _emit(s: _Stream, start: int, end: int, probs: list[float], reason: str, out: _Out) -> None:
    chunks = s.chunks
    first = int(np.searchsorted(chunks[:, 0], start, side="right")) - 1
    last = int(np.searchsorted(chunks[:, 0], end - 1, side="right")) - 1
    start_us = int(chunks[first, 1]) + _duration_us(start - int(chunks[first, 0]))
    end_us = int(chunks[last, 1]) + _duration_us(end - int(chunks[last, 0]))
    begin = pd.Timestamp(start_us, unit="us", tz="UTC")
    values = np.asarray(probs, dtype=np.float64)
    out.rows.append({
        "window_start": out.window_start,
        "device_id": s.device_id,
        "recorded_at": begin,
        "segment_id": f"{s.device_id}-{start_us // 1000}",
        "start_time": begin,
        "end_time": pd.Timestamp(end_us, unit="us", tz="UTC"),
        "duration_ms": (end - start) * 1000 // out.rules.sample_rate,
        "mean_probability": float(values.mean()) if values.size else math.nan,
        "max_probability": float(values.max()) if values.size else math.nan,
        "end_reason": reason,
        "sample_rate": out.rules.sample_rate,
        "audio": pcm16(s.audio[start - s.origin:end - s.origin]),
        "source_topic": s.source_topic,
        "source_partition": _nullable(chunks[first, 2]),
        "first_source_offset": _nullable(chunks[first, 3]),
        "last_source_offset": _nullable(chunks[last, 3]),
        "chunk_count": last - first + 1,
        "vad_model": out.vad_model,
    })


def _nullable(value: Any) -> int | None:
    return None if int(value) < 0 else int(value)


def _trim(s: _Stream, rules: VadRules) -> None:
    """Drop audio no segment can still need: keep the open segment's audio, else the padding
    before the next frame, and the partial frame."""
    keep = (s.samples // rules.frame_samples) * rules.frame_samples - rules.pad_samples
    if s.triggered:
        keep = min(keep, s.seg_audio_start)
    keep = max(keep, s.origin, 0)
    s.audio = s.audio[keep - s.origin:].copy()
    first = int(np.searchsorted(s.chunks[:, 0], keep, side="right")) - 1
    s.chunks = s.chunks[max(first, 0):]


# -- carry ----------------------------------------------------------------------------------------
def _carry_row(s: _Stream, out: _Out) -> dict:
    open_start = None
    if s.triggered:
        first = int(np.searchsorted(s.chunks[:, 0], s.seg_audio_start, side="right")) - 1
        open_start = pd.Timestamp(
            int(s.chunks[first, 1]) + _duration_us(s.seg_audio_start - int(s.chunks[first, 0])), unit="us", tz="UTC")
    return {
        "window_start": out.window_start,
        "device_id": s.device_id,
        "source_topic": s.source_topic,
        "vad_model": out.vad_model,
        "rules_version": out.rules.version,
        "stream_end": pd.Timestamp(s.end_us, unit="us", tz="UTC"),
        "stream_samples": s.samples,
        "open_segment_start": open_start,
        "segment_start_sample": s.seg_start if s.triggered else None,
        "segment_audio_start_sample": s.seg_audio_start if s.triggered else None,
        "segment_after_cut": s.after_cut if s.triggered else None,
        "silence_start_sample": s.silence if s.triggered else None,
        "last_segment_end_sample": s.floor,
        "segment_probs": np.asarray(s.probs if s.triggered else [], dtype="<f4").tobytes(),
        "audio": s.audio.astype("<f4").tobytes(),
        "vad_state": (s.state or VadState.initial()).to_bytes(),
        "chunks": s.chunks.astype("<i8").tobytes(),
    }


def _carried_streams(carry: pd.DataFrame | None, rules: VadRules):
    """(stream, vad_model, rules_version) per device of `carry` (its latest row)."""
    if carry is None or carry.empty:
        return
    carry = with_columns(carry, CARRY_DTYPES)
    carry = carry.assign(window_start=utc(carry["window_start"]))
    carry = carry.sort_values("window_start", kind="stable").groupby("device_id", sort=True).tail(1)
    for row in carry.sort_values("device_id").to_dict("records"):
        seg_start = _int_or_none(row["segment_start_sample"])
        triggered = seg_start is not None
        audio = np.frombuffer(bytes(row["audio"]), "<f4").astype(np.float32)
        chunks = np.frombuffer(bytes(row["chunks"]), "<i8").astype(np.int64).reshape(-1, 4)
        stream = _Stream(
            device_id=row["device_id"],
            source_topic=row["source_topic"] if isinstance(row["source_topic"], str) else "",
            samples=int(row["stream_samples"]),
            frames=int(row["stream_samples"]) // rules.frame_samples,
            audio=audio,
            chunks=chunks,
            end_us=_epoch_us(row["stream_end"]),
            state=VadState.from_bytes(row["vad_state"]),
            triggered=triggered,
            seg_start=seg_start or 0,
            seg_audio_start=_int_or_none(row["segment_audio_start_sample"]) or 0,
            after_cut=bool(row["segment_after_cut"]) if triggered and not pd.isna(row["segment_after_cut"]) else False,
            silence=_int_or_none(row["silence_start_sample"]),
            floor=_int_or_none(row["last_segment_end_sample"]) or 0,
            probs=np.frombuffer(bytes(row["segment_probs"] or b""), "<f4").astype(float).tolist(),
        )
        yield stream, row["vad_model"], row["rules_version"]


def _error_row(window_start: pd.Timestamp, row: dict, error_type: str, message: str) -> dict:
    return {
        "window_start": window_start,
        "device_id": row.get("device_id"),
        "recorded_at": row.get("recorded_at"),
        "source_topic": row.get("source_topic"),
        "source_partition": _int_or_none(row.get("source_partition")),
        "source_offset": _int_or_none(row.get("source_offset")),
        "message_id": row.get("message_id"),
        "error_type": error_type,
        "error_message": message,
    }
