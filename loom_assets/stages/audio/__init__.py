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

from loom_assets.models.vad import SileroVad, VadModelError, VadState
from loom_assets.stages.audio.decoding import (
    RAW_FORMATS,
    WAV_FORMATS,
    AudioDecodeError,
    as_wav,
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
from loom_assets.stages.audio.streams import voice_segments
