"""Voice segments: per-device streams of speech probabilities, carried across windows."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from loom_assets.models.vad import VadModelError, VadState
from loom_assets.stages.audio.decoding import (
    AudioDecodeError,
    _int_or_none,
    decode_audio,
    decode_chunk,
    pcm16,
)
from loom_assets.stages.audio.protocols import VoiceActivityModel
from loom_assets.stages.audio.rows import (
    CARRY_DTYPES,
    CHUNK_COLUMNS,
    ERROR_DTYPES,
    SEGMENT_DTYPES,
    VadResult,
)
from loom_assets.stages.audio.rules import RULES, VadRules
from loom_assets.stages.frames import typed_frame, utc, with_columns


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
