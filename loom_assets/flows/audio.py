"""Audio: chunks (WAV or raw PCM, any rate; bytes in the blob store) → voice segments (Silero
VAD) → transcripts with word times; and the acoustic environment of every 10 s of audio."""

import importlib.metadata

import pandas as pd
from dagster import AssetExecutionContext, RetryPolicy

from loom_assets.flows.base import Carry, Flow, StageOutput
from loom_assets.flows.embeddings import Embedded, embeddings_stage
from loom_assets.models.speech import WHISPER_DEFAULT, WHISPER_PACKAGE
from loom_assets.resources.models import Models
from loom_assets.settings import settings
from loom_assets.stages import audio, speech

FLOW = Flow(
    name="audio",
    topics=("device.audio.raw",),
    description="Audio chunks recorded by each device (base64 WAV or PCM; bytes in the blob store).",
    alert_error_rate=0.05,  # docs/flows/audio.md#retries-and-alerts
)
VAD_RULES = audio.RULES
ENVIRONMENT_RULES = speech.EnvironmentRules()
# Model versions for the code versions, known without loading the models (rows also carry the
# exact version each model reports).
VAD_VERSION = f"silero-vad-{importlib.metadata.version('silero-vad')}"
STT_VERSION = settings().stt_model or f"{WHISPER_DEFAULT}-ct2-{importlib.metadata.version(WHISPER_PACKAGE)}"

raw = FLOW.raw


@FLOW.stage(
    logic_version="1",
    rules_version=f"{VAD_VERSION}-rules{VAD_RULES.version}",
    retry=RetryPolicy(max_retries=3, delay=1),  # docs/flows/audio.md#retries-and-alerts: 3 retries, 1 s
    # The VAD stream each window leaves in audio_vad_carry, read by the next.
    carry=Carry(per=(), lookback=FLOW.window, table="audio_vad_carry"),
    media={"raw": {"data_uri": "audio_bytes"}},
    stores={"audio": ".wav"},
)
def voice_segments(context: AssetExecutionContext, raw: pd.DataFrame, state: pd.DataFrame,
                   models: Models) -> StageOutput:
    """Speech segments (Silero VAD, threshold 0.5, ≥ 250 ms, ≤ 15 s) with their audio as a WAV in
    the blob store. Speech that runs across chunks and windows is one segment: each window
    continues the VAD stream the previous one left in `audio_vad_carry`."""
    span = context.partition_time_window
    chunks, carry = raw, state
    segments, errors, carries = [], [], []
    window = span.start
    while window < span.end:  # a range of windows (a backfill) goes window by window
        mine = chunks[chunks["window_start"] == window] if not chunks.empty else chunks
        result = audio.voice_segments(mine, carry, models.vad(), VAD_RULES, window_start=window)
        segments.append(result.segments)
        errors.append(result.errors)
        carries.append(result.carry)
        carry = result.carry
        window += FLOW.window
    found = pd.concat(segments, ignore_index=True)
    found["audio"] = [audio.as_wav(bytes(pcm)) for pcm in found["audio"]]
    # The segments, their errors and the VAD stream each window leaves, in one transaction.
    return StageOutput(found,
                       errors=pd.concat(errors, ignore_index=True),
                       carry=pd.concat(carries, ignore_index=True), carry_table="audio_vad_carry")


@FLOW.stage(
    logic_version="1",
    rules_version=STT_VERSION,
    retry=RetryPolicy(max_retries=2, delay=5),  # docs/flows/audio.md#retries-and-alerts: 2 retries, 5 s
    media={"voice_segments": {"audio_uri": "wav"}},
    gpu=True,  # Parakeet-TDT, the production model, is built for a GPU
)
def transcripts(voice_segments: pd.DataFrame, models: Models) -> pd.DataFrame:
    """The words of each voice segment with their times and confidences (the bundled Whisper
    tiny.en, or Parakeet-TDT when configured); full-text indexed."""
    segments = voice_segments.assign(
        audio=[audio.pcm16(audio.decode_audio(wav, format="wav", sample_rate=None, channels=None)[0])
               for wav in voice_segments["wav"]]).drop(columns=["wav"]) if not voice_segments.empty else voice_segments
    return speech.transcripts(segments, models.transcriber())


@FLOW.stage(
    logic_version="1",
    rules_version=f"yamnet-rules{ENVIRONMENT_RULES.version}",
    retry=RetryPolicy(max_retries=1, delay=2),  # docs/flows/audio.md#retries-and-alerts: 1 retry, 2 s
    media={"raw": {"data_uri": "audio_bytes"}},
)
def environment(raw: pd.DataFrame, models: Models) -> pd.DataFrame:
    """Indoor, outdoor, vehicle, crowd or quiet for every 10 s of a device's audio (YAMNet's
    AudioSet classes by stated lists), with the top AudioSet labels."""
    decoded = []
    for row in raw.itertuples(index=False):
        try:
            samples, _ = audio.decode_audio(row.audio_bytes, format=row.format, sample_rate=row.sample_rate,
                                            channels=row.channels)
        except audio.AudioDecodeError:
            continue  # an error row of voice_segments already
        decoded.append({"window_start": row.window_start, "device_id": row.device_id,
                        "start_time": row.recorded_at, "samples": samples})
    return speech.environment(pd.DataFrame(decoded), models.yamnet(), ENVIRONMENT_RULES)


embeddings = embeddings_stage(
    FLOW, of="transcripts",
    embedded=lambda transcripts: Embedded(transcripts, transcripts["segment_id"], None, transcripts["text"]),
    description="Each transcript's text with its vector (all-MiniLM-L6-v2 by default, 384 dims), so `loom "
                "search` finds what was said; silent segments (no words) are left out.",
)
