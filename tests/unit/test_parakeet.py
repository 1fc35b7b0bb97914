"""Parakeet-TDT through real NeMo, end to end: a tiny randomly initialised TDT model is saved to a
.nemo file and loaded by Loom's production path (`load_transcriber` -> `ASRModel.restore_from`).

docs/architecture.md#models-inside-packages: NeMo is the optional `loom[parakeet]` extra and
Parakeet's weights never ship in a package, so the model here has Parakeet's shape
(FastConformer-style encoder with 8x depthwise striding, RNNT prediction net and joint with TDT
durations, greedy TDT decoding, SentencePiece tokenizer) at a size that builds in a second, and its
words are arbitrary: the tests check what Loom makes of NeMo's output (types, timings, version,
table rows), not what it says. Where NeMo is not installed (CI, the default environment) every test
here is skipped.
"""

import hashlib
import math
import shutil
import subprocess
import time
import wave
from math import gcd

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("nemo.collections.asr", reason="NeMo is not installed (optional extra loom[parakeet])")

import torch
from nemo.collections.asr.models import EncDecRNNTBPEModel
from nemo.collections.common.tokenizers.sentencepiece_tokenizer import create_spt_model
from omegaconf import OmegaConf
from scipy.signal import resample_poly

from loom_assets.models.speech import (
    ParakeetTranscriber,
    Transcript,
    TranscriberError,
    load_transcriber,
    transcriber_kind,
)
from loom_assets.stages.speech import TRANSCRIPT_DTYPES, transcripts

SR = 16_000
DURATIONS = [0, 1, 2, 3, 4]  # frames a TDT token may skip; parakeet-tdt-0.6b-v2 uses 0-4 too
# Weight seed. With torch 2.13 on CPU this model writes ~20 words per clip; most seeds (0-5, 7-9)
# write one long word, which would leave word order untested.
SEED = 6
SENTENCES = (
    "the quick brown fox jumps over the lazy dog",
    "pack my box with five dozen liquor jugs",
    "how vexingly quick daft zebras jump",
    "sphinx of black quartz judge my vow",
    "meeting notes from the morning stand up",
)
SPOKEN = ("the quick brown fox jumps over the lazy dog", "pack my box with five dozen liquor jugs")


def tiny_parakeet_config(tokenizer_dir) -> dict:
    """Parakeet-TDT's architecture (NeMo's fast-conformer TDT recipe) at toy size: 1 Conformer
    layer of width 32, a 32-unit LSTM prediction net and joint; ~40 k parameters."""
    width = 32
    return {
        "sample_rate": SR,
        "model_defaults": {"enc_hidden": width, "pred_hidden": width, "joint_hidden": width,
                           "tdt_durations": DURATIONS, "num_tdt_durations": len(DURATIONS)},
        "tokenizer": {"dir": str(tokenizer_dir), "type": "bpe"},
        "preprocessor": {
            "_target_": "nemo.collections.asr.modules.AudioToMelSpectrogramPreprocessor",
            "sample_rate": SR, "normalize": "per_feature", "window_size": 0.025, "window_stride": 0.01,
            "window": "hann", "features": 80, "n_fft": 512, "frame_splicing": 1, "dither": 1e-5,
            "pad_to": 0,
        },
        "encoder": {
            "_target_": "nemo.collections.asr.modules.ConformerEncoder",
            "feat_in": 80, "feat_out": -1, "n_layers": 1, "d_model": width,
            "subsampling": "dw_striding", "subsampling_factor": 8, "subsampling_conv_channels": 16,
            "ff_expansion_factor": 2, "self_attention_model": "rel_pos", "n_heads": 2,
            "att_context_size": [-1, -1], "xscaling": True, "untie_biases": True,
            "conv_kernel_size": 9, "conv_norm_type": "batch_norm",
            "dropout": 0.0, "dropout_pre_encoder": 0.0, "dropout_emb": 0.0, "dropout_att": 0.0,
        },
        "decoder": {
            "_target_": "nemo.collections.asr.modules.RNNTDecoder",
            "normalization_mode": None, "random_state_sampling": False, "blank_as_pad": True,
            "prednet": {"pred_hidden": width, "pred_rnn_layers": 1, "t_max": None, "dropout": 0.0},
        },
        "joint": {
            "_target_": "nemo.collections.asr.modules.RNNTJoint",
            "log_softmax": None, "preserve_memory": False, "fuse_loss_wer": False,
            "num_extra_outputs": len(DURATIONS),
            "jointnet": {"joint_hidden": width, "activation": "relu", "dropout": 0.0},
        },
        "decoding": {"strategy": "greedy_batch", "model_type": "tdt", "durations": DURATIONS,
                     "greedy": {"max_symbols": 10}},
        "loss": {"loss_name": "tdt", "tdt_kwargs": {"fastemit_lambda": 0.0, "clamp": -1.0,
                                                    "durations": DURATIONS, "sigma": 0.02, "omega": 0.1}},
    }


@pytest.fixture(scope="module")
def saved_parakeet(tmp_path_factory):
    """(the model as built, its .nemo file, seconds to train the tokenizer + build + save)."""
    folder = tmp_path_factory.mktemp("parakeet")
    started = time.perf_counter()
    (folder / "text.txt").write_text("\n".join(SENTENCES) + "\n")
    create_spt_model(str(folder / "text.txt"), vocab_size=40, sample_size=-1, do_lower_case=True,
                     tokenizer_type="bpe", output_dir=str(folder / "tokenizer"))
    torch.manual_seed(SEED)
    model = EncDecRNNTBPEModel(cfg=OmegaConf.create(tiny_parakeet_config(folder / "tokenizer")))
    path = folder / "tiny-parakeet.nemo"
    model.save_to(str(path))
    return model.eval(), path, time.perf_counter() - started


@pytest.fixture(scope="module")
def parakeet(saved_parakeet) -> ParakeetTranscriber:
    return load_transcriber(str(saved_parakeet[1]))


def speech(text: str, folder) -> np.ndarray:
    """`text` spoken by espeak-ng at 16 kHz; without espeak-ng, a voiced stand-in (120 Hz harmonics
    in 4 Hz syllables). Quantised to int16 steps, so the int16 and float forms are the same audio."""
    if shutil.which("espeak-ng"):
        path = folder / "speech.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(path), text], check=True)
        with wave.open(str(path)) as f:
            rate = f.getframerate()
            x = np.frombuffer(f.readframes(f.getnframes()), dtype="<i2").astype(np.float64) / 32768.0
        g = gcd(rate, SR)
        x = resample_poly(x, SR // g, rate // g)
    else:
        t = np.arange(int(0.07 * len(text) * SR)) / SR
        x = sum(np.sin(2 * np.pi * 120 * k * t) / k for k in range(1, 12))
        x = 0.5 * x / np.abs(x).max() * np.clip(np.sin(2 * np.pi * 4 * t), 0, None)
    return np.round(np.clip(x, -1, 1) * 32767).astype(np.int16)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[np.ndarray]:
    return [speech(text, tmp_path_factory.mktemp("speech")) for text in SPOKEN]


def test_a_saved_tiny_parakeet_loads_through_loom_pinned_to_its_file(saved_parakeet, parakeet):
    built, path, build_s = saved_parakeet
    assert transcriber_kind(path) == "parakeet"
    assert isinstance(parakeet, ParakeetTranscriber)
    assert parakeet.version == f"parakeet-tiny-parakeet-{hashlib.sha256(path.read_bytes()).hexdigest()[:12]}"

    restored = parakeet._model
    assert type(restored) is EncDecRNNTBPEModel and not restored.training
    assert restored.cfg.decoding.model_type == "tdt" and list(restored.cfg.decoding.durations) == DURATIONS
    assert restored.tokenizer.vocab_size == built.tokenizer.vocab_size
    saved, loaded = built.state_dict(), restored.state_dict()
    assert saved.keys() == loaded.keys()
    for name, tensor in saved.items():
        assert torch.equal(tensor.cpu(), loaded[name].cpu()), name

    started = time.perf_counter()
    again = load_transcriber(str(path))
    print(f"\ntiny Parakeet-TDT: {sum(p.numel() for p in built.parameters())} parameters, "
          f"{path.stat().st_size / 1e6:.2f} MB .nemo, tokenizer+build+save {build_s:.2f} s, "
          f"restore {time.perf_counter() - started:.2f} s")
    assert again.version == parakeet.version


def test_the_tiny_parakeet_gives_timed_words_that_spell_its_text(parakeet, clips):
    word_counts = []
    for clip in clips:
        duration = len(clip) / SR
        started = time.perf_counter()
        result = parakeet.transcribe(clip)
        elapsed = time.perf_counter() - started
        print(f"\n{duration:.2f} s clip in {elapsed:.3f} s (real-time factor {elapsed / duration:.3f}): "
              f"{len(result.words)} words")

        assert isinstance(result, Transcript)
        assert result.language == "en" and result.duration_s == pytest.approx(duration)
        assert isinstance(result.text, str) and result.text == result.text.strip()
        # Random weights still emit tokens; NeMo's word timestamps must spell the same text.
        assert result.text and result.words
        assert " ".join(w.word for w in result.words) == result.text
        for word in result.words:
            assert word.word and word.word == word.word.strip() and " " not in word.word
            assert word.probability is None  # Parakeet gives no word confidences
            assert 0.0 <= word.start_s <= word.end_s <= duration
        for before, after in zip(result.words, result.words[1:]):
            assert before.end_s <= after.start_s, (before, after)
        word_counts.append(len(result.words))

        # The same samples as float, and a second run, give the same transcript (NeMo turns the
        # preprocessor's dither off while transcribing).
        assert parakeet.transcribe(clip.astype(np.float32) / 32768.0) == result
    assert max(word_counts) >= 2, f"seed {SEED} wrote one word per clip: word order is untested"


def test_the_tiny_parakeet_hears_nothing_in_no_audio(parakeet):
    assert parakeet.transcribe(np.zeros(0, dtype=np.int16)) == Transcript("", "en", (), 0.0)


def test_transcript_rows_from_the_tiny_parakeet(parakeet, clips):
    start = pd.Timestamp("2025-03-03 10:00:03.250", tz="UTC")
    window = pd.Timestamp("2025-03-03 10:00:00", tz="UTC")
    segments = pd.DataFrame([
        {"window_start": window, "device_id": "phone-1", "recorded_at": start + pd.Timedelta(seconds=5 * i),
         "segment_id": f"s{i}", "start_time": start + pd.Timedelta(seconds=5 * i),
         "end_time": start + pd.Timedelta(seconds=5 * i + len(clip) / SR), "audio": clip.astype("<i2").tobytes(),
         "source_chunk": "lineage"}
        for i, clip in enumerate(clips)])
    out = transcripts(segments, parakeet)
    assert list(out.columns) == list(TRANSCRIPT_DTYPES) and len(out) == len(clips)
    assert {c: str(t) for c, t in out.dtypes.items()} == {c: str(pd.Series(dtype=t).dtype)
                                                           for c, t in TRANSCRIPT_DTYPES.items()}
    for row, clip in zip(out.itertuples(index=False), clips):
        direct = parakeet.transcribe(clip)
        assert row.text == direct.text and row.language == "en"
        assert row.word_count == len(direct.words) == len(row.words)
        assert row.words == [{"word": w.word, "start": round(w.start_s, 3), "end": round(w.end_s, 3),
                              "probability": None} for w in direct.words]
        assert math.isnan(row.avg_word_probability)
        assert row.duration_ms == round(len(clip) * 1000 / SR)
        assert row.transcriber == parakeet.version


def test_a_missing_or_unreadable_nemo_file_fails_loudly(tmp_path):
    with pytest.raises(TranscriberError, match="missing"):
        load_transcriber(str(tmp_path / "absent.nemo"))
    broken = tmp_path / "broken.nemo"
    broken.write_bytes(b"not a tar archive")
    with pytest.raises(TranscriberError, match="could not be loaded"):
        load_transcriber(str(broken))
