"""The local Apache Kafka node's configuration: its KRaft cluster id, server.properties and log4j2 properties."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path


def new_cluster_id() -> str:
    """A fresh KRaft cluster id: 16 random bytes, URL-safe base64 without padding; never one
    starting with "-", which the storage tool would read as an option (as Kafka's own
    generator avoids)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def server_properties(data_dir: Path, port: int, controller_port: int) -> str:
    """The combined broker+controller ``server.properties`` for a single local node.

    A static voter set (``controller.quorum.voters``) is used rather than the
    dynamic ``controller.quorum.bootstrap.servers`` one: with a static set the
    controller endpoint is read from this file at every start, so the
    controller port may change between restarts without touching the data.
    """
    log_dirs = (Path(data_dir) / "kraft-logs").resolve()
    return "\n".join([
        "# Written by loom_assets.embedded.kafka at every start; edits are lost.",
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
        f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name=PLAINTEXT",
        "controller.listener.names=CONTROLLER",
        f"log.dirs={log_dirs}",
        "num.partitions=3",
        "default.replication.factor=1",
        "min.insync.replicas=1",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=3",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        "group.initial.rebalance.delay.ms=0",
        # The controller appends a no-op record to the metadata log this often when nothing else
        # happens (500 ms by default): a single local node needs no such liveness beat twice a
        # second, and an idle broker costs less.
        "metadata.max.idle.interval.ms=5000",
        "auto.create.topics.enable=false",
        "delete.topic.enable=true",
        "num.network.threads=2",
        "num.io.threads=4",
        "log.retention.hours=168",
        "log.segment.bytes=134217728",
        # Images and audio arrive as base64 text: allow records up to 64 MiB, so an oversized
        # one reaches Loom and becomes an error row rather than a producer failure.
        "message.max.bytes=67108864",
        "",
    ])


def log4j2_properties(log_file: Path) -> str:
    """A quiet log4j2 config: INFO to a size-capped rolling file, nothing on the console."""
    log_file = Path(log_file).resolve()
    return "\n".join([
        "status = error",
        "name = loom-embedded-kafka",
        "appender.file.type = RollingFile",
        "appender.file.name = File",
        f"appender.file.fileName = {log_file}",
        f"appender.file.filePattern = {log_file}.%i",
        "appender.file.layout.type = PatternLayout",
        "appender.file.layout.pattern = [%d] %p %m (%c)%n",
        "appender.file.policies.type = Policies",
        "appender.file.policies.size.type = SizeBasedTriggeringPolicy",
        "appender.file.policies.size.size = 20MB",
        "appender.file.strategy.type = DefaultRolloverStrategy",
        "appender.file.strategy.max = 3",
        "rootLogger.level = info",
        "rootLogger.appenderRef.file.ref = File",
        # The request logger and the state-change logger are chatty at INFO.
        "logger.request.name = kafka.request.logger",
        "logger.request.level = warn",
        "logger.state.name = state.change.logger",
        "logger.state.level = warn",
        "",
    ])
