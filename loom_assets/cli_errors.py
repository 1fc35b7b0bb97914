"""How `loom` fails: an expected failure (no database, a service down, an unknown flow or
stage, a bad date) is one line on stderr and exit status 1; anything else is a bug and keeps
its traceback (docs/architecture.md#the-loom-command).

The known failures are mapped here, once, for every command: commands raise, this module speaks.
"""

import functools
import logging
import socket
import sys

import click

from loom_assets.redaction import redact
from loom_assets.settings import settings
from loom_assets.stack import NO_DATABASE


def die(message: str) -> None:
    # Messages quote errors of libraries, which may quote a URL with its password or token.
    click.echo(click.style(redact(" ".join(message.split())), fg="red"), err=True)
    sys.exit(1)


def _broker_answers(servers: str, timeout_s: float = 2.0) -> bool:
    """Whether any bootstrap server accepts a TCP connection: a refused port fails here at once
    instead of after every broker call's timeout."""
    for server in servers.split(","):
        host, _, port = server.strip().rpartition("://")[2].rpartition(":")
        try:
            with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout_s):
                return True
        except (OSError, ValueError):
            continue
    return False


def needs(*services: str):
    """A command that uses these services ("database", "kafka") fails at once, in one line,
    when no database is configured (DATABASE_URL, or the stack of a running `loom dev`) or
    when no Kafka bootstrap server accepts a connection."""

    def decorate(command):
        @functools.wraps(command)
        def checked(*args, **kwargs):
            if "database" in services and not settings().database_url:
                die(NO_DATABASE)
            servers = settings().kafka_bootstrap_servers
            if "kafka" in services and not _broker_answers(servers):
                die(f"Kafka at {servers} refuses connections: is it running? `loom dev` starts one, "
                    "or set KAFKA_BOOTSTRAP_SERVERS")
            return command(*args, **kwargs)

        return checked

    return decorate


def _loaded(module: str, *names: str) -> tuple[type, ...]:
    """The named exception classes of `module` if it is imported (an exception of a module
    never imported cannot have been raised), so mapping a failure imports nothing."""
    loaded = sys.modules.get(module)
    return tuple(getattr(loaded, name) for name in names) if loaded is not None else ()


def _kafka_failure(error: Exception) -> str:
    servers = settings().kafka_bootstrap_servers
    detail = error.args[0].str() if error.args and hasattr(error.args[0], "str") else str(error)
    return (f"Kafka at {servers} did not answer ({detail}): is it running? `loom dev` starts one, "
            "or set KAFKA_BOOTSTRAP_SERVERS")


def _database_failure(error: Exception) -> str:
    detail = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return f"PostgreSQL at {settings().database_url or '?'} cannot be used: {detail}"


def expected_failure(error: BaseException) -> str | None:
    """The one line to print for a known failure (looking through `raise … from` wrappers, as
    Dagster's around a resource's error), or None for a bug."""
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, _loaded("loom_assets.resources.warehouse", "DatabaseNotConfigured")):
            return str(error)
        if isinstance(error, _loaded("psycopg", "OperationalError")):
            return _database_failure(error)
        if isinstance(error, _loaded("loom_assets.resources.kafka", "BrokerUnavailable")
                      + _loaded("confluent_kafka", "KafkaException")):
            return _kafka_failure(error.__cause__ if isinstance(error.__cause__, Exception) else error)
        if isinstance(error, _loaded("loom_assets.definitions", "UnknownFlow")
                      + _loaded("loom_assets.processing", "UnknownStage")
                      + _loaded("loom_assets.search", "SearchError")
                      + _loaded("loom_assets.regions", "RegionError")):
            return str(error.args[0]) if error.args else str(error)
        error, seen = error.__cause__, seen + 1
    return None


class LoomGroup(click.Group):
    """The `loom` group: every command's expected failures become one line (see above)."""

    def invoke(self, ctx: click.Context):
        # librdkafka's connection complaints (loom.kafka): a broker that is down is one line below.
        logging.getLogger("loom.kafka").addHandler(logging.NullHandler())
        logging.getLogger("loom.kafka").propagate = False
        try:
            return super().invoke(ctx)
        except Exception as error:  # click's own exits and aborts are not in the map: re-raised
            message = expected_failure(error)
            if message is None:
                raise
            die(message)
