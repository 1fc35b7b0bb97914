"""Row layouts of the audio tables."""

from __future__ import annotations

from typing import NamedTuple

import pandas as pd

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
