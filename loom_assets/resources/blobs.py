"""The blob store: audio and images stored once, addressed by their content; tables keep the URI.

A local directory by default (`LOOM_HOME/blobs`); any fsspec URL in production
(`s3://bucket/prefix` with the `s3` extra, which brings s3fs: AWS S3, MinIO, Ceph, R2 …).
Blobs are written once under `sha256/<2>/<2>/<digest><suffix>`, so storing the same bytes
twice costs nothing and a re-run writes nothing new. Retention and erasure remove blobs that
no table row refers to any more (`unreferenced`, run by the housekeeping job).
"""

import hashlib
import posixpath
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from functools import cached_property

import fsspec
from dagster import ConfigurableResource

from loom_assets.settings import settings


class BlobNotFound(FileNotFoundError):
    """A URI the store does not hold (deleted by retention or erasure, or never written)."""


class BlobStore(ConfigurableResource):
    """Content-addressed blobs under `url` (empty: the setting LOOM_BLOB_URL, else LOOM_HOME/blobs)."""

    url: str | None = None

    @property
    def root(self) -> str:
        return (self.url or settings().blob_url or (settings().home / "blobs").as_uri()).rstrip("/")

    @cached_property
    def _fs(self) -> fsspec.AbstractFileSystem:
        fs, _ = fsspec.core.url_to_fs(self.root)
        return fs

    def _path(self, uri: str) -> str:
        if not uri.startswith(self.root + "/"):
            raise BlobNotFound(f"{uri} is not in the blob store at {self.root}")
        _, path = fsspec.core.url_to_fs(uri)
        return path

    def uri_for(self, data: bytes, suffix: str = "") -> str:
        digest = hashlib.sha256(data).hexdigest()
        return posixpath.join(self.root, "sha256", digest[:2], digest[2:4], digest + suffix)

    def put(self, data: bytes, suffix: str | None = None) -> str:
        """Store `data` (once) and return its URI; `suffix` (".wav", ".jpg"; default: sniffed
        from the bytes) tells tools its type."""
        uri = self.uri_for(data, sniff_suffix(data) if suffix is None else suffix)
        path = self._path(uri)
        if not self._fs.exists(path):
            # Write beside it and rename: a reader never sees half a blob.
            partial = f"{path}.{uuid.uuid4().hex}.partial"
            self._fs.makedirs(posixpath.dirname(path), exist_ok=True)
            self._fs.pipe_file(partial, data)
            self._fs.mv(partial, path)
        return uri

    def get(self, uri: str) -> bytes:
        path = self._path(uri)
        try:
            return self._fs.cat_file(path)
        except FileNotFoundError:
            raise BlobNotFound(f"no blob {uri}") from None

    def exists(self, uri: str) -> bool:
        return self._fs.exists(self._path(uri))

    def modified(self, uri: str) -> datetime:
        stamp = self._fs.modified(self._path(uri))
        return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)

    def delete(self, uris: Iterable[str]) -> int:
        """Remove these blobs (missing ones are skipped); returns how many were removed."""
        removed = 0
        for uri in uris:
            path = self._path(uri)
            if self._fs.exists(path):
                self._fs.rm_file(path)
                removed += 1
        return removed

    def attach(self, rows, uri_column: str, as_column: str):
        """`rows` (a DataFrame) with the bytes of each row's blob in `as_column`."""
        if rows.empty:
            return rows
        return rows.assign(**{as_column: [self.get(uri) if isinstance(uri, str) else None for uri in rows[uri_column]]})

    def all_uris(self) -> list[str]:
        """Every blob held (half-written ones excluded)."""
        base = self._path(self.root + "/sha256")
        if not self._fs.exists(base):
            return []
        return [self._fs.unstrip_protocol(p) for p in self._fs.find(base) if not p.endswith(".partial")]


# Leading bytes of the media Loom receives -> file suffix.
_MAGIC = ((b"RIFF", ".wav"), (b"\xff\xd8\xff", ".jpg"), (b"\x89PNG", ".png"), (b"GIF8", ".gif"),
          (b"fLaC", ".flac"), (b"OggS", ".ogg"), (b"ID3", ".mp3"))


def sniff_suffix(data: bytes) -> str:
    if data[8:12] == b"WEBP":
        return ".webp"
    return next((suffix for magic, suffix in _MAGIC if data.startswith(magic)), "")


def unreferenced(store: BlobStore, referenced: Iterable[str], grace: timedelta = timedelta(days=1)) -> list[str]:
    """The store's blobs that no row refers to, written more than `grace` ago (a run may have
    stored a blob whose row it has not committed yet): what retention and erasure left behind."""
    keep, cutoff = set(referenced), datetime.now(UTC) - grace
    return [uri for uri in store.all_uris() if uri not in keep and store.modified(uri) < cutoff]
