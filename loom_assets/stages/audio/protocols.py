"""What the voice activity stage expects of its model (loom_assets.models.vad implements it)."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from loom_assets.models.vad import VadState


class VoiceActivityModel(Protocol):
    version: str

    def speech_probs(self, samples_16k: np.ndarray, state: VadState | None = None) -> tuple[np.ndarray, VadState]: ...
