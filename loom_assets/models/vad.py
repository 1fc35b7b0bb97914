"""Silero VAD run with onnxruntime, and its recurrent state between frames."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.resources
from dataclasses import dataclass
from pathlib import Path

import numpy as np


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
