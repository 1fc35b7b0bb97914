"""The text embedder (the bundled all-MiniLM-L6-v2) and the embedding rows every flow writes."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from loom_assets.models.embeddings import (
    BATCH_SIZE,
    DEFAULT_MODEL,
    DIMENSIONS,
    EmbeddingModelError,
    embedder_version,
    load_embedder,
)
from loom_assets.stages.embeddings import COLUMNS, embedding_rows, first_heading, ocr_pages

T0 = datetime(2025, 6, 2, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def embedder():
    return load_embedder()


def items(count: int) -> pd.DataFrame:
    return pd.DataFrame({
        "window_start": pd.Series([T0] * count, dtype="datetime64[us, UTC]"),
        "device_id": [f"device-{i % 2}" for i in range(count)],
        "recorded_at": pd.Series([T0 + timedelta(minutes=i) for i in range(count)], dtype="datetime64[us, UTC]"),
        "extra": range(count),
    })


def test_the_bundled_model_gives_normalised_384_dimension_vectors(embedder):
    vectors = embedder.embed(["The flight to Lisbon leaves at 7:40", "Standup moved to 10 am"])
    assert embedder.version == DEFAULT_MODEL == embedder_version(None)
    assert embedder.dimensions == DIMENSIONS == 384
    assert vectors.shape == (2, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.embed([]).shape == (0, 384)


def test_similar_sentences_are_closer_than_unrelated_ones(embedder):
    flight, tickets, dentist, rust = embedder.embed([
        "I booked a flight to Lisbon for next Friday",
        "My plane tickets to Portugal are confirmed",
        "Reminder: dental check-up on Tuesday at 3 pm",
        "Rust's borrow checker prevents data races at compile time",
    ])
    assert flight @ tickets > 0.5
    assert flight @ tickets > max(flight @ dentist, flight @ rust, tickets @ dentist) + 0.3


def test_a_model_path_that_does_not_exist_fails_loudly_naming_the_setting(monkeypatch, tmp_path):
    from loom_assets.resources.models import Models

    missing = tmp_path / "no-such-model"
    monkeypatch.setenv("LOOM_EMBEDDING_MODEL", str(missing))
    with pytest.raises(EmbeddingModelError, match="LOOM_EMBEDDING_MODEL=.*no-such-model.*not a local"):
        Models().embedder()
    # A hub name is refused the same way: models are never downloaded at run time.
    with pytest.raises(EmbeddingModelError, match="never downloaded"):
        load_embedder("sentence-transformers/all-mpnet-base-v2")


def test_a_folder_that_is_not_a_model_fails_loudly(tmp_path):
    (tmp_path / "README.txt").write_text("not a model")
    with pytest.raises(EmbeddingModelError, match=r"LOOM_EMBEDDING_MODEL=.*cannot load the embedding model"):
        load_embedder(tmp_path)
    assert embedder_version(tmp_path / "my-model") == "my-model"


def test_embedding_rows_keep_the_items_and_skip_blank_texts(embedder):
    frame = items(5)
    rows = embedding_rows(
        frame,
        source_id=pd.Series([101.0, 102.0, np.nan, 104.0, 105.0]),  # an int id column with a gap
        title=pd.Series(["Flight booked", "  ", None, "Dentist", None]),
        text=pd.Series(["Your flight XK7Q2P is confirmed", "Standup notes", None, "   ", "Groceries: milk, eggs"]),
        embedder=embedder,
    )
    assert list(rows.columns) == list(COLUMNS)
    assert rows["source_id"].tolist() == ["101", "102", "105"]  # never "102.0", "nan" or "None"
    assert rows["title"].tolist()[0] == "Flight booked"
    assert rows["title"].isna().tolist() == [False, True, True]  # blank titles are no title
    assert rows["body"].tolist() == ["Your flight XK7Q2P is confirmed", "Standup notes", "Groceries: milk, eggs"]
    kept = frame.iloc[[0, 1, 4]].reset_index(drop=True)
    pd.testing.assert_series_equal(rows["recorded_at"], kept["recorded_at"])
    pd.testing.assert_series_equal(rows["window_start"], kept["window_start"])
    assert rows["device_id"].tolist() == kept["device_id"].tolist()
    np.testing.assert_allclose(np.stack(rows["embedding"]), embedder.embed(rows["body"].tolist()), atol=1e-6)


def test_embedding_rows_without_titles_or_items(embedder):
    frame = items(2)
    rows = embedding_rows(frame, source_id=pd.Series(["a", "b"]), title=None,
                          text=pd.Series(["one", "two"]), embedder=embedder)
    assert rows["title"].isna().all()
    empty = embedding_rows(frame.iloc[:0], source_id=pd.Series([], dtype=str), title=None,
                           text=pd.Series([], dtype=str), embedder=embedder)
    assert empty.empty and list(empty.columns) == list(COLUMNS)


def test_an_item_without_a_source_id_is_refused(embedder):
    with pytest.raises(ValueError, match="1 item.*no source_id"):
        embedding_rows(items(2), source_id=pd.Series(["a", None]), title=None,
                       text=pd.Series(["one", "two"]), embedder=embedder)


def test_a_window_larger_than_a_batch_embeds_as_each_text_alone(embedder):
    count = 2 * BATCH_SIZE + 6  # three batches of 32, with padding in each
    texts = pd.Series([f"Note {i}: " + "about the quarterly plan " * (i % 7 + 1) for i in range(count)])
    rows = embedding_rows(items(count), source_id=pd.Series(range(count)), title=None, text=texts,
                          embedder=embedder)
    assert len(rows) == count
    alone = np.stack([embedder.embed([t])[0] for t in texts[[0, 33, count - 1]]])
    np.testing.assert_allclose(np.stack(rows["embedding"])[[0, 33, count - 1]], alone, atol=1e-4)


def test_ocr_pages_take_the_first_heading_and_skip_near_duplicates():
    text = pd.DataFrame({
        "window_start": [T0] * 3, "device_id": ["d"] * 3, "recorded_at": [T0, T0 + timedelta(seconds=5), T0],
        "source_topic": ["device.image.screenshot.raw"] * 3, "source_partition": [0, 0, 1],
        "source_offset": [7, 8, 9], "message_id": ["shot-1", "shot-2", None],
        "duplicate_of": [None, "shot-1", None],
        "text": ["Quarterly plan\n\nShip search", "Quarterly plan\n\nShip search", "a paragraph"],
        "blocks": [[{"kind": "paragraph", "text": "x"}, {"kind": "heading", "text": "Quarterly plan"}],
                   [{"kind": "heading", "text": "Quarterly plan"}],
                   [{"kind": "paragraph", "text": "a paragraph"}]],
    })
    pages = ocr_pages(text)
    assert pages["source_id"].tolist() == ["shot-1", "device.image.screenshot.raw:1:9"]
    assert pages["title"].tolist()[0] == "Quarterly plan" and pd.isna(pages["title"].iloc[1])
    assert first_heading([None, [], [{"kind": "heading", "text": ""}, {"kind": "heading", "text": "B"}]]) == \
        [None, None, "B"]
    assert ocr_pages(text.iloc[:0]).empty
