"""Media lands in the blob store: audio chunks and images become raw rows with a content-addressed
URI; bad base64 becomes an error row with the original kept."""

import base64
import io
import wave
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from PIL import Image

from loom_assets.resources.blobs import BlobStore
from tests.integration.test_spine import flat, invoke, produce, table

pytestmark = pytest.mark.integration


def wav_bytes(seconds: float = 0.5, rate: int = 16000) -> bytes:
    tone = (np.sin(2 * np.pi * 440 * np.arange(int(seconds * rate)) / rate) * 8000).astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(rate), w.writeframes(tone.tobytes())
    return out.getvalue()


def image_bytes(kind: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(out, format=kind)
    return out.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_media_lands_in_the_blob_store(loom_env):
    at = datetime.now(UTC) - timedelta(minutes=1)
    wav, png, jpeg = wav_bytes(), image_bytes("PNG"), image_bytes("JPEG")
    produce(loom_env["bootstrap"], [
        ("device.audio.raw", flat(at, data=b64(wav), sample_rate=16000, channels=1, format="wav", duration_ms=500)),
        # The same bytes again, without the optional duration_ms (an integer column with a gap).
        ("device.audio.raw", flat(at, chunk_data=b64(wav), sample_rate=16000)),
        ("device.image.screenshot.raw", flat(at, image_data=b64(png), format="png", width=64, height=48,
                                             camera_type="screen")),
        ("device.image.camera.raw", flat(at, image_data=b64(jpeg), width=64, height=48, camera_type="rear")),
        ("device.image.camera.raw", flat(at, image_data="not base64!", width=1, height=1)),
    ])
    invoke("process", "--through-now")
    url = loom_env["database_url"]
    store = BlobStore()

    audio = table(url, "audio_raw")
    assert len(audio) == 2 and audio["data_uri"].nunique() == 1  # stored once
    assert audio["data_uri"].iloc[0].endswith(".wav") and audio["data_bytes"].iloc[0] == len(wav)
    assert store.get(audio["data_uri"].iloc[0]) == wav
    shot = table(url, "screenshot_ocr_raw").iloc[0]
    assert shot["image_data_uri"].endswith(".png") and store.get(shot["image_data_uri"]) == png
    photo = table(url, "camera_vision_raw")
    assert len(photo) == 1 and store.get(photo["image_data_uri"].iloc[0]) == jpeg

    errors = table(url, "processing_errors", order="source_offset")
    assert errors[["flow", "error_type"]].values.tolist() == [["camera_vision", "validation_error"]]
    assert "not valid base64" in errors["error_message"].iloc[0]
    assert b"not base64!" in bytes(errors["original_value"].iloc[0])
    assert len(store.all_uris()) == 3
