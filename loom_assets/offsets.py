"""Kafka offset ranges: the pure types that windows, landing and the offset log share, free of Dagster."""

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class OffsetRange:
    """Half-open offset range [start, end) of one topic partition in one window."""

    topic: str
    partition: int
    start: int
    end: int

    @property
    def count(self) -> int:
        return self.end - self.start
