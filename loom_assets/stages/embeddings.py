"""Text embeddings of any flow's items: one row per item with the text that was embedded, so
`loom search` ranks every source the same way (vector similarity plus full text)."""

from typing import Protocol

import numpy as np
import pandas as pd

# The columns of every `<flow>_embeddings` table (sql/0010, `loom_create_embedding_table`).
COLUMNS = ("window_start", "device_id", "recorded_at", "source_id", "title", "body", "embedding")


class Embedder(Protocol):
    version: str
    dimensions: int

    def embed(self, texts: list[str]) -> np.ndarray: ...


def embedding_rows(items: pd.DataFrame, *, source_id: pd.Series, title: pd.Series, text: pd.Series,
                   embedder: Embedder) -> pd.DataFrame:
    """`items` (window_start, device_id, recorded_at) with the vector of `text`. `source_id`
    names the item in its stage table (the link back); items with no text are left out."""
    if items.empty:
        return pd.DataFrame(columns=list(COLUMNS))
    body = text.fillna("").astype(str).str.strip()
    keep = (body != "").to_numpy()
    rows = pd.DataFrame({
        "window_start": items["window_start"].to_numpy()[keep],
        "device_id": items["device_id"].to_numpy()[keep],
        "recorded_at": items["recorded_at"].to_numpy()[keep],
        "source_id": source_id.astype(str).to_numpy()[keep],
        "title": title.where(title.notna(), None).to_numpy()[keep],
        "body": body.to_numpy()[keep],
    })
    vectors = embedder.embed(rows["body"].tolist())
    rows["embedding"] = list(vectors)
    return rows
