"""The embedded defaults of `loom dev`: PostgreSQL and Kafka under `.loom/`, unless the
environment already points at real ones (DATABASE_URL, KAFKA_BOOTSTRAP_SERVERS)."""

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from loom_assets.embedded.kafka import dev_port, start_local_broker
from loom_assets.embedded.postgres import create_database, start_postgres
from loom_assets.settings import Settings


@dataclass
class DevStack:
    environment: dict[str, str]
    broker_kind: str
    stoppers: list[Callable[[], None]] = field(default_factory=list)

    def stop(self) -> None:
        for stop in reversed(self.stoppers):
            stop()


def start_dev_services(config: Settings) -> DevStack:
    stack = DevStack(environment={}, broker_kind="external")
    if os.environ.get("DATABASE_URL"):
        stack.environment["DATABASE_URL"] = os.environ["DATABASE_URL"]
    else:
        postgres = start_postgres(config.home / "postgres")
        stack.stoppers.append(postgres.stop)
        stack.environment["DATABASE_URL"] = create_database(postgres.uri, "loom")
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        stack.environment["KAFKA_BOOTSTRAP_SERVERS"] = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    else:
        broker = start_local_broker(config.home / "kafka", port=dev_port(), libs_dir=config.home / "cache" / "kafka-libs")
        stack.stoppers.append(broker.stop)
        stack.environment["KAFKA_BOOTSTRAP_SERVERS"] = broker.bootstrap_servers
        stack.broker_kind = broker.kind
    return stack
