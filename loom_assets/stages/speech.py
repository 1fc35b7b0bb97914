"""Speech: transcripts of voice segments, and the acoustic environment (docs/flows/audio.md#transcripts).

`transcripts` is stage `speech_to_text`: one row per voice segment of the VAD (docs/flows/audio.md#stages:
speech-to-text reads the VAD's segments, not raw audio), with its words and their times.
`environment` is stage `environment_classification`: the window's audio of each device, cut into
fixed 10 s slices, classified by YAMNet's 521 AudioSet scores into the categories of
docs/flows/audio.md#environment indoor / outdoor / vehicle / crowd / quiet (`EnvironmentRules`). It
reads all audio, not only speech: the environment is mostly heard between words.

Models are passed in (`models.speech.Transcriber`, `models.yamnet.YamNet`); nothing here does I/O.
Audio is 16 kHz mono: int16 little-endian PCM bytes, or a numpy array (int16, or float in [-1, 1]).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from loom_assets.stages.frames import typed_frame, utc, with_columns

SAMPLE_RATE = 16_000
_TIME = "datetime64[us, UTC]"

SEGMENT_COLUMNS = ("window_start", "device_id", "recorded_at", "segment_id", "start_time", "end_time", "audio")

# PostgreSQL types in the comments.
TRANSCRIPT_DTYPES: dict[str, str] = {
    "window_start": _TIME,                 # timestamptz: the partition that transcribed it
    "device_id": "str",                    # text
    "recorded_at": _TIME,                  # timestamptz: the segment's recorded_at (its start)
    "segment_id": "str",                   # text: the voice segment's id
    "text": "str",                         # text, '' when nothing was said
    "language": "str",                     # text, NULL when the model does not say
    "words": "object",                     # jsonb: [{word, start, end, probability}], see `transcripts`
    "word_count": "Int64",                 # integer
    "avg_word_probability": "float64",     # double precision, NULL without words or confidences
    "duration_ms": "Int64",                # integer: length of the segment's audio
    "transcriber": "str",                  # text: the model's version
}

AUDIO_COLUMNS = ("window_start", "device_id", "start_time", "samples")

ENVIRONMENT_DTYPES: dict[str, str] = {
    "window_start": _TIME,                 # timestamptz
    "device_id": "str",                    # text
    "recorded_at": _TIME,                  # timestamptz: the slice's start on the 10 s grid
    "duration_ms": "Int64",                # integer: audio in the slice (10 000 when it is all there)
    "environment": "str",                  # text: indoor | outdoor | vehicle | crowd | quiet | unknown
    "confidence": "float64",               # double precision in [0, 1]
    "rms_dbfs": "float64",                 # double precision, >= -120
    "top_labels": "object",                # jsonb: [{label, score}] x 5, best first
    "model": "str",                        # text: YAMNet version + "+rules<version>"
}


def float_samples(audio) -> np.ndarray:
    """16 kHz mono audio as float32 in [-1, 1]: int16 LE PCM bytes, an int16 array or a float array."""
    if audio is None:
        return np.empty(0, dtype=np.float32)
    if isinstance(audio, (bytes, bytearray, memoryview)):
        raw = bytes(audio)
        return (np.frombuffer(raw[: len(raw) // 2 * 2], dtype="<i2").astype(np.float32) / 32768.0)
    x = np.asarray(audio)
    if x.dtype == np.int16:
        return x.astype(np.float32).reshape(-1) / 32768.0
    return x.astype(np.float32).reshape(-1)


# -- transcripts ----------------------------------------------------------------------------------
def transcripts(segments: pd.DataFrame | None, transcriber) -> pd.DataFrame:
    """One row per voice segment (`TRANSCRIPT_DTYPES`), in device and time order.

    `segments` has window_start, device_id, recorded_at, segment_id, start_time, end_time and audio
    (int16 PCM mono 16 kHz bytes); a segment_id seen twice for a device is transcribed once.
    `words` is a list of {"word", "start", "end", "probability"}: start/end in seconds from the
    segment's start_time (ms precision; add them to start_time for wall-clock times), probability
    the model's word confidence (4 decimals) or None. A segment with no audio, or in which the
    model hears nothing, gets text '' and no words. `transcriber` is a `models.speech.Transcriber`.
    """
    frame = with_columns(segments, SEGMENT_COLUMNS)
    frame = frame.dropna(subset=["device_id", "segment_id"])
    if frame.empty:
        return typed_frame([], TRANSCRIPT_DTYPES)
    frame = frame.assign(recorded_at=utc(frame["recorded_at"]), start_time=utc(frame["start_time"]))
    frame = (frame.sort_values(["device_id", "start_time", "segment_id"], kind="stable")
             .drop_duplicates(["device_id", "segment_id"], keep="first"))
    rows: list[dict] = []
    for segment in frame.itertuples(index=False):
        samples = float_samples(segment.audio)
        duration_ms = int(round(len(samples) * 1000 / SAMPLE_RATE))
        if len(samples):
            result = transcriber.transcribe(samples)
            text, language = result.text.strip(), result.language
            words = [_word_json(w) for w in result.words]
        else:
            text, language, words = "", None, []
        probabilities = [w["probability"] for w in words if w["probability"] is not None]
        rows.append({
            "window_start": segment.window_start,
            "device_id": segment.device_id,
            "recorded_at": segment.recorded_at,
            "segment_id": str(segment.segment_id),
            "text": text,
            "language": language,
            "words": words,
            "word_count": len(words),
            "avg_word_probability": float(np.mean(probabilities)) if probabilities else math.nan,
            "duration_ms": duration_ms,
            "transcriber": transcriber.version,
        })
    return typed_frame(rows, TRANSCRIPT_DTYPES)


def _word_json(word) -> dict:
    token, start, end, probability = word
    return {
        "word": str(token),
        "start": round(float(start), 3),
        "end": round(float(end), 3),
        "probability": None if probability is None or pd.isna(probability) else round(float(probability), 4),
    }


# -- environment ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class EnvironmentRules:
    """AudioSet classes (YAMNet display names, exact) behind each environment. Bump `version` when
    anything changes.

    Per slice: YAMNet scores every 0.96 s patch (0.48 s hop); a class's slice score is its mean
    over the patches. A category's evidence is the sum of its classes' slice scores (weak cues
    count `weak_weight` times); the slice's environment is the category with the most evidence and
    its confidence that evidence's share of all categories' evidence. Two overrides: a slice whose
    RMS level is below `quiet_rms_dbfs` is quiet with confidence 1, and a slice whose evidence
    totals less than `min_evidence` is "unknown" with confidence 0 (no class says where it is).
    """

    version: str = "1"

    # docs/flows/audio.md#environment asks for a classification per batch of VAD output; we classify
    # fixed slices of all audio instead, on a grid of multiples of 10 s since the epoch so slices do
    # not depend on where a partition starts. 10 s holds 19 YAMNet patches: enough to average over a
    # passing noise, short enough to see a change of place (getting into a car).
    slice_seconds: float = 10.0
    # -60 dBFS RMS (full-scale sine = -3 dBFS): 30 dB under conversational speech in a phone
    # recording (about -30 dBFS), above a 16-bit recorder's noise floor (about -90 dBFS).
    quiet_rms_dbfs: float = -60.0
    # Digital silence has no level in dB: it is reported as this floor.
    rms_floor_dbfs: float = -120.0
    # Below this much total evidence (a sum of mean sigmoid scores) no category is credible.
    min_evidence: float = 0.05
    top_k: int = 5

    vehicle: tuple[str, ...] = (
        "Vehicle", "Motor vehicle (road)", "Car", "Car passing by", "Race car, auto racing", "Truck",
        "Bus", "Motorcycle", "Traffic noise, roadway noise", "Vehicle horn, car horn, honking",
        "Toot", "Air brake", "Air horn, truck horn", "Reversing beeps", "Power windows, electric windows",
        "Skidding", "Tire squeal", "Rail transport", "Train", "Train whistle", "Train horn",
        "Railroad car, train wagon", "Train wheels squealing", "Subway, metro, underground",
        "Aircraft", "Aircraft engine", "Jet engine", "Propeller, airscrew", "Helicopter",
        "Fixed-wing aircraft, airplane", "Boat, Water vehicle", "Motorboat, speedboat", "Ship",
        "Engine", "Light engine (high frequency)", "Medium engine (mid frequency)",
        "Heavy engine (low frequency)", "Engine knocking", "Engine starting", "Idling",
        "Accelerating, revving, vroom",
    )
    crowd: tuple[str, ...] = (
        "Crowd", "Chatter", "Hubbub, speech noise, speech babble", "Cheering", "Applause",
        "Children playing", "Children shouting", "Cacophony",
    )
    outdoor: tuple[str, ...] = (
        "Outside, urban or manmade", "Outside, rural or natural", "Wind", "Rustling leaves",
        "Wind noise (microphone)", "Thunderstorm", "Thunder", "Rain", "Raindrop", "Rain on surface",
        "Stream", "Waterfall", "Ocean", "Waves, surf", "Bird", "Bird vocalization, bird call, bird song",
        "Chirp, tweet", "Squawk", "Pigeon, dove", "Crow", "Caw", "Bird flight, flapping wings",
        "Insect", "Cricket", "Frog", "Siren", "Civil defense siren", "Police car (siren)",
        "Ambulance (siren)", "Fire engine, fire truck (siren)", "Emergency vehicle", "Church bell",
        "Lawn mower", "Chainsaw", "Jackhammer", "Fireworks",
    )
    indoor: tuple[str, ...] = (
        "Inside, small room", "Inside, large room or hall", "Inside, public space", "Reverberation",
        "Television", "Radio", "Typing", "Typewriter", "Computer keyboard", "Writing",
        "Dishes, pots, and pans", "Cutlery, silverware", "Chopping (food)", "Frying (food)",
        "Microwave oven", "Blender", "Water tap, faucet", "Sink (filling or washing)",
        "Bathtub (filling or washing)", "Hair dryer", "Toilet flush", "Toothbrush",
        "Electric toothbrush", "Vacuum cleaner", "Door", "Doorbell", "Ding-dong", "Sliding door",
        "Knock", "Cupboard open or close", "Drawer open or close", "Telephone",
        "Telephone bell ringing", "Ringtone", "Alarm clock", "Mechanical fan", "Air conditioning",
        "Printer", "Sewing machine", "Cash register", "Clock", "Tick", "Tick-tock",
    )
    # Speech or music on their own (no crowd, traffic or nature around them) most often means a
    # room, but they are heard everywhere: they count for indoor at a quarter of their score.
    indoor_weak: tuple[str, ...] = (
        "Speech", "Child speech, kid speaking", "Conversation", "Narration, monologue",
        "Whispering", "Speech synthesizer", "Music",
    )
    weak_weight: float = 0.25
    quiet: tuple[str, ...] = ("Silence",)

    CATEGORIES = ("indoor", "outdoor", "vehicle", "crowd", "quiet")

    def weights(self, class_names: tuple[str, ...]) -> np.ndarray:
        """(len(class_names), 5) weight of each class for each category, in `CATEGORIES` order.

        Raises ValueError naming any listed class the model does not have (a typo would
        otherwise silently drop a cue)."""
        index = {name: i for i, name in enumerate(class_names)}
        weights = np.zeros((len(class_names), len(self.CATEGORIES)))
        lists = {"indoor": [(n, 1.0) for n in self.indoor] + [(n, self.weak_weight) for n in self.indoor_weak],
                 "outdoor": [(n, 1.0) for n in self.outdoor], "vehicle": [(n, 1.0) for n in self.vehicle],
                 "crowd": [(n, 1.0) for n in self.crowd], "quiet": [(n, 1.0) for n in self.quiet]}
        unknown = sorted({n for pairs in lists.values() for n, _ in pairs} - set(index))
        if unknown:
            raise ValueError(f"EnvironmentRules name classes the model does not have: {unknown}")
        for k, category in enumerate(self.CATEGORIES):
            for name, weight in lists[category]:
                weights[index[name], k] = weight
        return weights


def rms_dbfs(samples: np.ndarray, floor: float = -120.0) -> float:
    """RMS level in dB relative to full scale (a full-scale square wave = 0 dBFS), at least `floor`."""
    x = np.asarray(samples, dtype=np.float64)
    if len(x) == 0:
        return floor
    rms = math.sqrt(float(np.mean(x * x)))
    return max(floor, 20.0 * math.log10(rms)) if rms > 0 else floor


def classify_environment(scores: np.ndarray, level_dbfs: float, class_names: tuple[str, ...],
                         rules: EnvironmentRules, weights: np.ndarray | None = None) -> dict:
    """{environment, confidence, top_labels} of one slice from its YAMNet scores (n_patches, 521)."""
    weights = rules.weights(class_names) if weights is None else weights
    mean = np.asarray(scores, dtype=np.float64).mean(axis=0) if len(scores) else np.zeros(len(class_names))
    order = np.argsort(-mean, kind="stable")[: rules.top_k]
    top = [{"label": class_names[i], "score": round(float(mean[i]), 4)} for i in order]
    evidence = mean @ weights
    total = float(evidence.sum())
    if level_dbfs < rules.quiet_rms_dbfs:
        return {"environment": "quiet", "confidence": 1.0, "top_labels": top}
    if total < rules.min_evidence:
        return {"environment": "unknown", "confidence": 0.0, "top_labels": top}
    best = int(np.argmax(evidence))
    return {"environment": rules.CATEGORIES[best], "confidence": round(float(evidence[best]) / total, 4),
            "top_labels": top}


def environment(audio: pd.DataFrame | None, yamnet, rules: EnvironmentRules) -> pd.DataFrame:
    """The acoustic environment of each device per 10 s slice (`ENVIRONMENT_DTYPES`).

    `audio` has window_start, device_id, start_time and samples (the window's decoded audio chunks,
    16 kHz mono). Slices are [s, s + 10 s) with s a multiple of 10 s since the epoch; a slice holds
    the chunks that *start* inside it, in time order, concatenated without filling gaps (a chunk
    belongs to one slice and to the one partition its start falls in, so with windows that are
    multiples of 10 s a slice is never split between partitions). A chunk repeated (same device
    and start_time) counts once. `duration_ms` is the slice's audio, `recorded_at` the slice
    start. `yamnet` is a `models.yamnet.YamNet` (`.scores`, `.class_names`, `.version`).
    """
    frame = with_columns(audio, AUDIO_COLUMNS).dropna(subset=["device_id", "start_time"])
    if frame.empty:
        return typed_frame([], ENVIRONMENT_DTYPES)
    frame = frame.assign(start_time=utc(frame["start_time"]))
    frame = (frame.sort_values(["device_id", "start_time"], kind="stable")
             .drop_duplicates(["device_id", "start_time"], keep="first"))
    slice_us = int(round(rules.slice_seconds * 1_000_000))
    micros = (frame["start_time"] - pd.Timestamp(0, tz="UTC")).to_numpy() // np.timedelta64(1, "us")
    frame = frame.assign(_slice=(micros // slice_us) * slice_us)
    weights = rules.weights(tuple(yamnet.class_names))
    model = f"{yamnet.version}+rules{rules.version}"
    rows: list[dict] = []
    for (device_id, slice_start), chunks in frame.groupby(["device_id", "_slice"], sort=True):
        samples = np.concatenate([float_samples(s) for s in chunks["samples"]])
        if len(samples) == 0:
            continue
        level = rms_dbfs(samples, rules.rms_floor_dbfs)
        verdict = classify_environment(yamnet.scores(samples), level, tuple(yamnet.class_names), rules, weights)
        rows.append({
            "window_start": chunks["window_start"].max(),
            "device_id": device_id,
            "recorded_at": pd.Timestamp(int(slice_start), unit="us", tz="UTC"),
            "duration_ms": int(round(len(samples) * 1000 / SAMPLE_RATE)),
            **verdict,
            "rms_dbfs": round(level, 2),
            "model": model,
        })
    return typed_frame(rows, ENVIRONMENT_DTYPES)
