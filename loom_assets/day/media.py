"""Thumbnails of the day's screenshots and photos, made from the blob store on request.

A photo's faces are blurred in its thumbnail as in the vision flow's stored crops
(docs/flows/camera_vision.md#rules): the boxes come from `camera_vision_faces`, in the upright
photo's pixels.
"""

from __future__ import annotations

import io
from datetime import datetime

import numpy as np
import psycopg
from PIL import Image, ImageOps

THUMB_WIDTH = 320

SCREENSHOT_SQL = """
SELECT image_data_uri FROM screenshot_ocr_raw
WHERE source_topic = 'device.image.screenshot.raw' AND source_partition = %s AND source_offset = %s
"""
PHOTO_SQL = """
SELECT image_data_uri FROM camera_vision_raw WHERE device_id = %s AND recorded_at = %s
ORDER BY source_offset DESC LIMIT 1
"""
FACES_SQL = """
SELECT DISTINCT x, y, w, h FROM camera_vision_faces_latest WHERE device_id = %s AND recorded_at = %s
"""


class NoMedia(LookupError):
    """No such screenshot or photo (never landed, erased, or its blob is gone)."""


def _blob(conn: psycopg.Connection, statement: str, params: tuple) -> bytes:
    from loom_assets.resources.blobs import BlobNotFound, BlobStore

    row = conn.execute(statement, params).fetchone()
    if row is None:
        raise NoMedia("no such image")
    try:
        return BlobStore().get(row[0])
    except BlobNotFound as error:
        raise NoMedia(str(error)) from None


def _jpeg(image: Image.Image) -> bytes:
    image = image.convert("RGB")
    if image.width > THUMB_WIDTH:
        image = image.resize((THUMB_WIDTH, max(1, round(image.height * THUMB_WIDTH / image.width))),
                             Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=80)
    return out.getvalue()


def screenshot_thumbnail(conn: psycopg.Connection, partition: int, offset: int) -> bytes:
    return _jpeg(Image.open(io.BytesIO(_blob(conn, SCREENSHOT_SQL, (partition, offset)))))


def photo_thumbnail(conn: psycopg.Connection, device_id: str, recorded_at: datetime) -> bytes:
    from loom_assets.stages.camera_vision import blur_faces
    from loom_assets.stages.camera_vision.rules import VisionRules

    photo = ImageOps.exif_transpose(Image.open(io.BytesIO(_blob(conn, PHOTO_SQL, (device_id, recorded_at)))))
    boxes = [tuple(float(v) for v in box) for box in conn.execute(FACES_SQL, (device_id, recorded_at))]
    if boxes:
        photo = Image.fromarray(blur_faces(np.asarray(photo.convert("RGB")), boxes, VisionRules()))
    return _jpeg(photo)
