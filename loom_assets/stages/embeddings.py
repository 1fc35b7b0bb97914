"""Text embeddings of any flow's items: one row per item with the text that was embedded, so
`loom search` ranks every source the same way (vector similarity plus full text)."""

from collections.abc import Iterable
from typing import Any, Protocol

import numpy as np
import pandas as pd

# The columns of every `<flow>_embeddings` table (sql/0010, `loom_create_embedding_table`).
COLUMNS = ("window_start", "device_id", "recorded_at", "source_id", "title", "body", "embedding")
ITEM_COLUMNS = ("window_start", "device_id", "recorded_at")


class Embedder(Protocol):
    version: str
    dimensions: int

    def embed(self, texts: list[str]) -> np.ndarray: ...


def embedding_rows(items: pd.DataFrame, *, source_id: pd.Series, title: pd.Series | None, text: pd.Series,
                   embedder: Embedder) -> pd.DataFrame:
    """`items` (window_start, device_id, recorded_at) with the vector of `text`. `source_id`
    names the item in its stage table (the link back); `title` may be None (no titles); items
    with no text are left out. The Series are aligned with `items` by position.

    The whole text is kept in `body` (full-text search reads all of it), while the model reads
    only its first 256 word pieces (all-MiniLM-L6-v2's limit): the vector stands for the start."""
    if items.empty:
        return pd.DataFrame(columns=list(COLUMNS))
    body = text.fillna("").astype(str).str.strip()
    keep = (body != "").to_numpy()
    ids = _as_text(source_id)
    if ids[keep].isna().any():
        raise ValueError(f"{int(ids[keep].isna().sum())} item(s) have no source_id: every embedding "
                         "row links back to its item")
    titles = (pd.Series(None, index=items.index, dtype=object) if title is None else
              _as_text(title).str.strip().replace("", pd.NA))
    rows = items.loc[keep, list(ITEM_COLUMNS)].reset_index(drop=True)
    rows["source_id"] = ids[keep].to_numpy(dtype=object)
    rows["title"] = titles[keep].astype(object).where(titles[keep].notna(), None).to_numpy()
    rows["body"] = body[keep].to_numpy()
    vectors = embedder.embed(rows["body"].tolist())
    rows["embedding"] = list(vectors)
    return rows


def _as_text(values: pd.Series) -> pd.Series:
    """Values as text with missing ones kept missing (never the strings "None" or "nan")."""
    if values.dtype.kind == "f" and values.dropna().mod(1).eq(0).all():
        values = values.astype("Int64")  # an integer id column with gaps arrives as floats
    return values.astype("string")


# -- what each flow embeds ----------------------------------------------------------------------
def first_heading(blocks: Iterable[Any]) -> list[str | None]:
    """The first heading of each OCR'd page (screenshot_ocr `blocks`: [{kind, text, …}]), if any."""
    return [next((b.get("text") for b in page if b.get("kind") == "heading" and b.get("text")), None)
            if isinstance(page, list) else None for page in blocks]


def ocr_pages(text: pd.DataFrame) -> pd.DataFrame:
    """The screenshots (and recording frames) whose text was OCRed, with `source_id` (their
    message id in `screenshot_ocr_text`) and `title` (the first heading). A near-duplicate
    screenshot repeats its original's text, so only the original is embedded (one hit, not a
    hit per repeat)."""
    if text.empty:
        return text.assign(source_id=pd.Series(dtype=object), title=pd.Series(dtype=object))
    pages = text[text["duplicate_of"].isna()] if "duplicate_of" in text else text
    lineage = (pages["source_topic"].astype(str) + ":" + pages["source_partition"].astype(str) + ":"
               + pages["source_offset"].astype(str))
    return pages.assign(source_id=pages["message_id"].where(pages["message_id"].notna(), lineage),
                        title=first_heading(pages["blocks"]))
