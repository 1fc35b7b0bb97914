"""The camera vision flow end to end: real photos (scikit-image's astronaut and coffee) →
`loom process` → the astronaut's face, gaze and pose; no face in the coffee; a person and a cup
(MB3-CenterNet), the cup tracked into the next photo; odometry rows; a photo that is not an
image is a preprocessed row with its error."""

import base64
import io
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from PIL import Image
from skimage import data

from loom_assets.resources.blobs import BlobStore
from tests.integration.test_spine import flat, invoke, produce, table

pytestmark = pytest.mark.integration


def jpeg(array) -> str:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="JPEG", quality=92)
    return base64.b64encode(out.getvalue()).decode()


def test_photos_give_objects_faces_gaze_poses_and_odometry(loom_env):
    at = datetime.now(UTC) - timedelta(minutes=1)
    astronaut, coffee = data.astronaut(), data.coffee()
    coffee_again = np.roll(coffee, (4, 6), axis=(0, 1))  # the same cup, the camera moved a little
    produce(loom_env["bootstrap"], [
        ("device.image.camera.raw", flat(at, image_data=jpeg(astronaut), width=512, height=512, camera_type="rear")),
        ("device.image.camera.raw", flat(at + timedelta(seconds=5), image_data=jpeg(coffee), width=600, height=400,
                                         camera_type="rear")),
        ("device.image.camera.raw", flat(at + timedelta(seconds=9), image_data=base64.b64encode(b"GIF89a broken").decode(),
                                         camera_type="rear")),
        ("device.image.camera.raw", flat(at + timedelta(seconds=12), image_data=jpeg(coffee_again), width=600,
                                         height=400, camera_type="rear")),
    ])
    invoke("process", "--through-now", "--flow", "camera_vision")
    url = loom_env["database_url"]

    pre = table(url, "camera_vision_preprocessed", order="recorded_at")
    assert len(pre) == 4
    assert pre["error_type"].iloc[[0, 1, 3]].isna().all() and pre["error_type"].iloc[2] is not None
    assert pre["original_width"].iloc[0] == 512 and not pre["is_blurred"].iloc[0]

    faces = table(url, "camera_vision_faces", order="recorded_at")
    assert len(faces) == 1 and faces["confidence"].iloc[0] >= 0.8
    assert faces["recorded_at"].iloc[0] == pre["recorded_at"].iloc[0]  # the astronaut, not the coffee
    gaze = table(url, "camera_vision_gaze", order="recorded_at")
    assert len(gaze) == 1 and gaze["gaze_z"].iloc[0] < -0.5  # toward the camera
    poses = table(url, "camera_vision_poses", order="recorded_at")
    assert len(poses["landmarks"].iloc[0]) == 33 * 4
    slam = table(url, "camera_vision_slam", order="recorded_at")
    assert slam["status"].iloc[0] == "initialized"
    assert set(slam["model_version"]) == {"1+orb-rules1"}

    found = table(url, "camera_vision_objects", order="recorded_at, object_index")
    assert found["label"].tolist() == ["person", "cup", "cup"]
    assert (found["confidence"] >= 0.5).all()
    assert found["recorded_at"].tolist() == pre["recorded_at"].iloc[[0, 1, 3]].tolist()
    assert set(found["model_version"]) == {"1+centernet-human-models-3.0.4-tfjs-4.22.0-nms0.5-rules1"}
    hashes = table(url, "camera_vision_object_hashes", order="recorded_at, object_index")
    assert hashes["label"].tolist() == ["person", "cup", "cup"]
    assert hashes["is_new_track"].tolist() == [True, True, False]
    assert hashes["track_id"].iloc[2] == hashes["track_id"].iloc[1] and hashes["similarity"].iloc[2] >= 0.85
    # each object's thumbnail is in the blob store (the astronaut's face blurred in hers)
    crops = [Image.open(io.BytesIO(BlobStore().get(uri))) for uri in hashes["crop_uri"]]
    assert [c.format for c in crops] == ["JPEG"] * 3 and max(max(c.size) for c in crops) <= 256
