"""The audio flow's voice activity rules."""

from __future__ import annotations

import math
from dataclasses import dataclass


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
