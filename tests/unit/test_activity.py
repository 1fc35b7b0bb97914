import functools
import io
import json
import math
import os
import pickle

import numpy as np
import pandas as pd
import pytest

from loom_assets.models import activity as model
from loom_assets.stages.activity import (
    ACTIVITY_DTYPES,
    FEATURE_NAMES,
    FEATURE_RATE_HZ,
    ActivityRules,
    activities,
    feature_vector,
)
from loom_assets.stages.frames import typed_frame

RULES = ActivityRules()
EXPECTED_DTYPES = typed_frame([], ACTIVITY_DTYPES).dtypes
T0 = pd.Timestamp("2025-03-03 10:00", tz="UTC")
RNG_SEED = 7


@functools.cache
def hapt() -> pd.DataFrame:
    """HAPT once per test session (~2 s)."""
    return model.load_hapt()


@functools.cache
def hapt_walking_window() -> np.ndarray:
    meta, xyz = model.hapt_windows(hapt()[hapt()["user"] == 1])
    return xyz[np.flatnonzero(meta["label"] == "walking")[0]]


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


# -- the restricted unpickler ---------------------------------------------------------------------
class _Calls:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize("payload", [_Calls(os.system, "echo pwned"), _Calls(eval, "1+1"),
                                     _Calls(__import__, "subprocess")])
def test_the_restricted_unpickler_refuses_globals_outside_the_allow_list(payload):
    data = pickle.dumps(payload, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="refusing to load global"):
        model.RestrictedUnpickler(io.BytesIO(data), source="evil.pkl").load()


def test_the_restricted_unpickler_refuses_reconstructing_other_classes():
    # copyreg._reconstructor is allowed (HAPT needs it), but only for DataFrame and BlockManager
    data = pickle.dumps(_Calls(__import__("copyreg")._reconstructor, io.StringIO, object, None), protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        model.RestrictedUnpickler(io.BytesIO(data)).load()
    with pytest.raises(pickle.UnpicklingError, match="refusing to reconstruct"):
        model._restricted_reconstructor(io.StringIO, object, None)


def test_hapt_loads_as_a_tidy_frame_in_metres_per_second_squared():
    frame = hapt()
    assert list(frame.columns) == ["user", "experiment", "sample", "label", "activity", "x", "y", "z"]
    assert len(frame) == 1_122_772
    assert sorted(frame["user"].unique()) == list(range(1, 31))
    still = frame[frame["activity"].isin(["SITTING", "STANDING", "LAYING"])]
    magnitude = np.linalg.norm(still[["x", "y", "z"]].to_numpy(), axis=1)
    assert np.median(magnitude) == pytest.approx(9.8, abs=0.3)


def test_hapt_windows_stay_inside_one_activity_and_drop_transitions():
    meta, xyz = model.hapt_windows(hapt()[hapt()["user"] == 2])
    assert xyz.shape[1:] == (250, 3)
    assert set(meta["label"]) == {"still", "walking", "stairs"}
    frame = hapt()[hapt()["user"] == 2].set_index(["experiment", "sample"])
    for row in meta.sample(20, random_state=0).itertuples():
        labels = frame.loc[row.experiment]["activity"].loc[row.start:row.start + 249]
        assert len(labels) == 250 and labels.nunique() == 1 and labels.iloc[0] == row.hapt_activity


# -- features -------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 2, 25, 50, 249, 250, 400])
def test_feature_vector_has_a_fixed_length_and_is_finite_for_any_window_length(n):
    rng = np.random.default_rng(RNG_SEED)
    xyz = np.tile(hapt_walking_window(), (2, 1))[:n] + rng.normal(0, 0.01, (n, 3))
    features = feature_vector(xyz)
    assert features.shape == (len(FEATURE_NAMES),) and features.dtype == np.float32
    assert np.isfinite(features).all()


@pytest.mark.parametrize("xyz", [
    np.zeros((250, 3)),                                     # no gravity at all
    np.tile([0.0, 0.0, 9.81], (250, 1)),                   # perfectly still
    np.r_[np.full((10, 3), np.nan), np.tile([0.0, 9.81, 0.0], (240, 1))],  # missing samples
    np.full((30, 3), np.inf),
])
def test_feature_vector_is_finite_on_degenerate_windows(xyz):
    assert np.isfinite(feature_vector(xyz)).all()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_feature_vector_does_not_depend_on_the_phone_orientation(seed):
    rng = np.random.default_rng(seed)
    window = hapt_walking_window()
    rotated = window @ random_rotation(rng).T
    np.testing.assert_allclose(feature_vector(rotated), feature_vector(window), rtol=1e-4, atol=1e-4)


def test_feature_names_match_the_vector_and_the_rate_is_hapts():
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES) == len(feature_vector(hapt_walking_window()))
    assert FEATURE_RATE_HZ == 50


# -- the shipped model ----------------------------------------------------------------------------
def test_the_shipped_model_scores_at_least_085_on_people_it_never_saw():
    classifier = model.load()
    assert classifier.version == model.artifact_version() and classifier.version.startswith("activity-1-")
    assert tuple(classifier.metadata["test_users"]) == model.TEST_USERS
    data = hapt()
    meta, xyz = model.hapt_windows(data[data["user"].isin(model.TEST_USERS)])
    predicted = classifier.predict_proba(model.window_features(xyz)).argmax(axis=1)
    accuracy = float((np.asarray(classifier.labels)[predicted] == meta["label"].to_numpy()).mean())
    assert accuracy >= 0.85
    assert os.path.getsize(model.DEFAULT_ARTIFACT) < 300_000


def test_training_twice_with_one_seed_gives_the_same_version():
    small = hapt()[hapt()["user"].isin([1, 2, 3])]
    config = model.TrainingConfig(epochs=2, augment_rates_hz=())
    first, report = model.train(seed=3, test_users=(3,), config=config, hapt=small)
    second, _ = model.train(seed=3, test_users=(3,), config=config, hapt=small)
    other, _ = model.train(seed=4, test_users=(3,), config=config, hapt=small)
    assert first.version == second.version != other.version
    assert np.asarray(report["heldout"]["confusion_matrix"]).sum() == report["heldout_windows"]


def test_a_saved_model_loads_back_with_its_version(tmp_path):
    small = hapt()[hapt()["user"].isin([1, 2])]
    trained, _ = model.train(test_users=(2,), config=model.TrainingConfig(epochs=1, augment_rates_hz=()), hapt=small)
    path = trained.save(tmp_path / "activity-test")
    assert path == tmp_path / "activity-test.pt"
    sidecar = json.loads((tmp_path / "activity-test.json").read_text())
    assert model.artifact_version(path) == trained.version == sidecar["version"]
    loaded = model.load(path)
    x = model.window_features(model.hapt_windows(small)[1][:5])
    np.testing.assert_allclose(loaded.predict_proba(x), trained.predict_proba(x), atol=1e-6)


def test_a_missing_model_names_its_path_and_the_command_that_makes_it(tmp_path):
    with pytest.raises(model.ActivityModelError, match=r"missing.*loom train activity") as error:
        model.load(tmp_path / "nowhere.pt")
    assert str(tmp_path / "nowhere.pt") in str(error.value)
    with pytest.raises(model.ActivityModelError, match="loom train activity"):
        model.artifact_version(tmp_path / "nowhere.pt")


def test_a_corrupt_model_names_its_path_and_the_command_that_makes_it(tmp_path):
    pt = tmp_path / "activity-v1.pt"
    pt.write_bytes(model.DEFAULT_ARTIFACT.read_bytes()[:5000])
    (tmp_path / "activity-v1.json").write_text(model._artifact_paths(model.DEFAULT_ARTIFACT)[1].read_text())
    with pytest.raises(model.ActivityModelError, match=r"unreadable.*loom train activity") as error:
        model.load(pt)
    assert str(pt) in str(error.value)


# -- activities: GPS, cadence and confidence rules ----------------------------------------------
class StubClassifier:
    """Probabilities chosen by the first feature: 0 still, 1 walking, 2 stairs, 3 unsure."""

    labels = ("still", "walking", "stairs")
    version = "stub-1"
    _rows = {0: (0.95, 0.03, 0.02), 1: (0.03, 0.95, 0.02), 2: (0.02, 0.03, 0.95), 3: (0.5, 0.3, 0.2)}

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        return np.array([self._rows[int(f[0])] for f in features])


STUB = StubClassifier()


def features_for(code: int) -> list[float]:
    return [float(code)] + [0.0] * (len(FEATURE_NAMES) - 1)


def windows(*specs, device="phone-1") -> pd.DataFrame:
    """One 5 s window per spec (code, step_count, magnitude_std), back to back from T0."""
    rows = []
    for i, (code, steps, motion) in enumerate(specs):
        start = T0 + pd.Timedelta(seconds=5 * i)
        rows.append({
            "window_start": T0, "device_id": device, "recorded_at": start,
            "window_end": start + pd.Timedelta(seconds=5), "step_count": steps, "peak_frequency_hz": 2.0,
            "magnitude_std": motion, "sample_count": 250, "features": None if code is None else features_for(code),
        })
    return pd.DataFrame(rows)


def fixes(*rows, device="phone-1") -> pd.DataFrame:
    """GPS rows (seconds after T0, latitude, longitude, speed, accuracy)."""
    return pd.DataFrame([
        {"device_id": device, "recorded_at": T0 + pd.Timedelta(seconds=s), "latitude": lat, "longitude": lon,
         "speed": speed, "accuracy": accuracy}
        for s, lat, lon, speed, accuracy in rows
    ])


def moving_at(speed_mps: float) -> pd.DataFrame:
    return fixes((0, 52.0, 13.0, speed_mps, 5.0), (10, 52.0, 13.0, speed_mps, 5.0))


def one(frame: pd.DataFrame) -> dict:
    assert len(frame) == 1
    return frame.iloc[0].to_dict()


@pytest.mark.parametrize(
    ("spec", "speed", "activity", "confidence", "source"),
    [
        # 1. faster than a bicycle: a vehicle whatever the motion or steps say
        ((1, 10, 2.0), 12.0, "vehicle", 0.9, "gps+classifier"),
        ((None, 0, math.nan), 12.0, "vehicle", 0.9, "gps"),
        # 2. steps at 6-8 m/s are pedal strokes
        ((2, 8, 2.0), 7.0, "cycling", 0.7, "gps+classifier"),
        # 3. walking-like motion with steps at a jogging speed
        ((1, 10, 2.0), 3.5, "running", 0.8, "gps+classifier"),
        # 5. no steps, clearly moving phone, bicycle speed
        ((0, 0, 1.5), 5.0, "cycling", 0.7, "gps+classifier"),
        ((0, 0, 1.5), 7.5, "cycling", 0.7, "gps+classifier"),
        # 6. no steps, a calm phone: vehicle (docs/flows/motion.md#activities > 5 m/s), less sure in
        # slow traffic
        ((0, 0, 0.2), 6.0, "vehicle", 0.9, "gps+classifier"),
        ((0, 0, 0.2), 4.0, "vehicle", 0.7, "gps+classifier"),
        ((1, 2, 0.2), 4.0, "vehicle", 0.7, "gps+classifier"),   # too few steps to be on foot
        # 7. slow GPS speeds leave the classifier's label
        ((1, 9, 2.0), 1.4, "walking", 0.95, "classifier"),
        ((0, 0, 0.05), 0.3, "still", 0.95, "classifier"),
        ((1, 9, 2.0), 2.4, "walking", 0.95, "classifier"),     # a brisk walk, under 2.5 m/s
    ],
)
def test_gps_speed_rules(spec, speed, activity, confidence, source):
    row = one(activities(windows(spec), moving_at(speed), STUB, RULES))
    assert (row["activity"], row["source"]) == (activity, source)
    assert row["confidence"] == pytest.approx(confidence)
    assert row["gps_speed_mps"] == pytest.approx(speed)


@pytest.mark.parametrize(
    ("spec", "activity", "confidence", "source"),
    [
        ((1, 14, 3.0), "running", 0.8, "steps+classifier"),    # 2.8 steps/s, walking-like
        ((2, 13, 3.0), "running", 0.8, "steps+classifier"),    # 2.6 steps/s, stairs-like
        ((1, 12, 3.0), "walking", 0.95, "classifier"),         # 2.4 steps/s: a brisk walk
        ((0, 14, 0.1), "still", 0.95, "classifier"),           # counted "steps" on a still phone
        ((3, 0, 0.1), "unknown", 0.5, "classifier"),           # below the 0.7 confidence threshold
    ],
)
def test_cadence_and_confidence_rules_without_gps(spec, activity, confidence, source):
    row = one(activities(windows(spec), None, STUB, RULES))
    assert (row["activity"], row["source"]) == (activity, source)
    assert row["confidence"] == pytest.approx(confidence)
    assert math.isnan(row["gps_speed_mps"])
    assert row["step_cadence_hz"] == pytest.approx(spec[1] / 5)


def test_a_window_without_features_is_unknown():
    row = one(activities(windows((None, 0, math.nan)), moving_at(1.0), STUB, RULES))
    assert (row["activity"], row["source"]) == ("unknown", "none")
    assert row["probabilities"] is None and math.isnan(row["confidence"])
    assert pd.isna(row["classifier_label"])


def test_without_gps_the_classifier_decides_and_reports_its_probabilities():
    out = activities(windows((0, 0, 0.05), (1, 9, 2.0), (2, 9, 2.5)), pd.DataFrame(), STUB, RULES)
    assert list(out["activity"]) == ["still", "walking", "stairs"]
    assert list(out["source"]) == ["classifier"] * 3
    assert out["gps_speed_mps"].isna().all()
    assert out.loc[1, "probabilities"] == pytest.approx({"still": 0.03, "walking": 0.95, "stairs": 0.02})
    assert list(out["classifier_label"]) == ["still", "walking", "stairs"]


# -- activities: the GPS speed of a window ------------------------------------------------------
def test_gps_speed_is_the_median_reported_speed_within_15_s():
    gps = fixes((-14, 52.0, 13.0, 4.0, 5.0), (2, 52.0, 13.0, 9.0, 5.0), (19, 52.0, 13.0, 10.0, 5.0),
                (40, 52.0, 13.0, 50.0, 5.0))   # 40 s: 35 s after the window, ignored
    assert one(activities(windows((0, 0, 0.2)), gps, STUB, RULES))["gps_speed_mps"] == pytest.approx(9.0)


def test_gps_speed_without_reported_speeds_is_distance_over_time():
    # 0.001° of latitude = 111.2 m, covered in 20 s (speed -1 is iOS's "unknown")
    gps = fixes((-10, 52.000, 13.0, -1.0, 5.0), (10, 52.001, 13.0, math.nan, 5.0))
    row = one(activities(windows((0, 0, 0.2)), gps, STUB, RULES))
    assert row["gps_speed_mps"] == pytest.approx(111.195 / 20, rel=1e-3)
    assert row["activity"] == "vehicle"


def test_distance_over_too_short_a_time_is_not_a_speed():
    gps = fixes((1, 52.000, 13.0, math.nan, 5.0), (4, 52.001, 13.0, math.nan, 5.0))
    assert math.isnan(one(activities(windows((0, 0, 0.2)), gps, STUB, RULES))["gps_speed_mps"])


def test_inaccurate_fixes_and_other_devices_fixes_are_ignored():
    gps = pd.concat([
        fixes((0, 52.0, 13.0, 20.0, 100.0), (10, 52.0, 13.0, 20.0, 26.0)),    # worse than 25 m
        fixes((0, 52.0, 13.0, 20.0, 5.0), device="phone-2"),
    ])
    row = one(activities(windows((1, 9, 2.0)), gps, STUB, RULES))
    assert math.isnan(row["gps_speed_mps"]) and row["activity"] == "walking"


def test_fixes_without_accuracy_are_used():
    row = one(activities(windows((0, 0, 0.2)), fixes((0, 52.0, 13.0, 12.0, math.nan)), STUB, RULES))
    assert row["activity"] == "vehicle"


# -- activities: shape --------------------------------------------------------------------------
@pytest.mark.parametrize("frame", [pd.DataFrame(), windows().iloc[:0], None])
def test_no_windows_give_an_empty_frame_with_the_activity_columns(frame):
    out = activities(frame, None, STUB, RULES)
    assert out.empty
    assert list(out.columns) == list(ACTIVITY_DTYPES)
    assert out.dtypes.equals(EXPECTED_DTYPES)


def test_output_has_exactly_the_activity_columns_and_dtypes():
    out = activities(windows((1, 9, 2.0), (None, 0, math.nan)), moving_at(1.0), STUB, RULES)
    assert list(out.columns) == list(ACTIVITY_DTYPES)
    assert out.dtypes.equals(EXPECTED_DTYPES)
    assert list(out["window_end"] - out["recorded_at"]) == [pd.Timedelta(seconds=5)] * 2


def test_feature_vectors_of_another_length_are_refused():
    frame = windows((1, 9, 2.0)).assign(features=[[1.0, 2.0, 3.0]])
    with pytest.raises(ValueError, match="feature vectors have 3 values"):
        activities(frame, None, STUB, RULES)


def test_the_real_classifier_labels_hapt_windows_through_activities():
    data = hapt()
    meta, xyz = model.hapt_windows(data[data["user"] == model.TEST_USERS[0]])
    picked = [np.flatnonzero(meta["label"] == label)[3] for label in ("still", "walking", "stairs")]
    frame = windows(*[(0, 0, float(np.linalg.norm(xyz[i], axis=1).std())) for i in picked])
    frame["features"] = [feature_vector(xyz[i]).tolist() for i in picked]
    out = activities(frame, None, model.load(), RULES)
    assert list(out["activity"]) == ["still", "walking", "stairs"]
    assert all(sum(p.values()) == pytest.approx(1.0) for p in out["probabilities"])
