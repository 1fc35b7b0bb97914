"""Local ports: finding a free one, and waiting for a starting server to listen on one."""

from __future__ import annotations

import socket
import subprocess
import time


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Return True when nothing listens on ``host:port``, so a broker can bind it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(preferred: int | None = None, host: str = "127.0.0.1") -> int:
    """Return ``preferred`` if it is free, else an ephemeral port the OS says is free.

    ``loom dev`` passes ``DEV_PORT`` so the broker sits on the familiar 9092
    unless something else already holds it; tests pass nothing.
    """
    if preferred is not None and port_is_free(preferred, host):
        return preferred
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_for_tcp(host: str, port: int, proc: subprocess.Popen, deadline: float, what: str = "broker") -> None:
    """Block until ``host:port`` accepts TCP connections, failing fast if ``proc`` (the server
    called ``what``) dies.

    Checking the socket first keeps librdkafka from spamming "connection
    refused" errors while the JVM is still starting.
    """
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} during startup")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{what} did not open {host}:{port} in time")
