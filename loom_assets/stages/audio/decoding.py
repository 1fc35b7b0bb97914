"""Decoding audio chunks (WAV or raw PCM, bytes or base64) into 16 kHz mono samples."""

from __future__ import annotations

import base64
import binascii
import io
import math
import struct
import wave
from typing import Any

import numpy as np
import pandas as pd

from loom_assets.stages.audio.rules import RULES, VadRules


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
    # scipy.signal takes seconds to import: only a chunk that needs resampling pays for it.
    from scipy import signal

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
