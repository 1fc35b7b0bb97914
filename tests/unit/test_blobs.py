"""The content-addressed blob store on a local directory (the default)."""

from datetime import timedelta

import pytest

from loom_assets.resources.blobs import BlobNotFound, BlobStore, unreferenced


@pytest.fixture
def store(tmp_path):
    return BlobStore(url=(tmp_path / "blobs").as_uri())


def test_blobs_are_stored_once_by_content(store, tmp_path):
    uri = store.put(b"RIFF....WAVEfmt ", ".wav")
    assert uri.startswith(store.root + "/sha256/") and uri.endswith(".wav")
    assert store.put(b"RIFF....WAVEfmt ", ".wav") == uri  # same bytes, same blob
    assert store.get(uri) == b"RIFF....WAVEfmt "
    assert store.all_uris() == [uri]
    assert not list((tmp_path / "blobs").rglob("*.partial"))


def test_deleting_and_sweeping_unreferenced_blobs(store):
    kept, orphan = store.put(b"kept", ".jpg"), store.put(b"orphan", ".jpg")
    # Just written: its row may not be committed yet, so the grace period keeps it.
    assert unreferenced(store, [kept]) == []
    assert unreferenced(store, [kept], grace=timedelta(0)) == [orphan]
    assert store.delete([orphan, orphan]) == 1
    assert store.all_uris() == [kept]
    with pytest.raises(BlobNotFound):
        store.get(orphan)


def test_uris_outside_the_store_are_refused(store):
    with pytest.raises(BlobNotFound, match="not in the blob store"):
        store.get("file:///etc/passwd")
    assert BlobStore(url="memory://loom-test").all_uris() == []
