"""The fault suite: one fault per scenario, injected into the real services, each scenario
ending with `harness.assert_invariants` and recording its outcome (`fault_outcome`), from which
the suite writes docs/reliability.md.

The page is written at the end of a session that ran every fault scenario (none deselected,
skipped or stopped before recording its outcome), only when its text changed, and lists each
scenario's numbers with whether it held. Outcomes are counts of the scenario's own records, never
times, so a re-run leaves the page as it was; a run of part of the suite (`-k`, a node id) does
not touch it.

A new scenario is a test here that records its outcome and ends with `assert_invariants`.
"""

import uuid
from pathlib import Path

import pytest

from loom_assets.embedded.kafka import KafkaBroker
from loom_assets.embedded.postgres import start_postgres
from tests.conftest import CACHE
from tests.faults import processes
from tests.faults.harness import Outcome, Tally, write_page

FAULTS = Path(__file__).resolve().parent
# Filled as the session runs: each fault test's outcome, whether it passed, its place on the page
# (file, line), and any sign that only part of the suite was asked for.
_outcomes: dict[str, Outcome] = {}
_passed: dict[str, bool] = {}
_collected: dict[str, tuple] = {}
_narrowed: list[str] = []


def _is_fault(item_or_path) -> bool:
    path = Path(getattr(item_or_path, "path", item_or_path))
    return FAULTS in path.parents


@pytest.fixture(autouse=True)
def no_process_left_behind():
    yield
    while processes.started:
        process = processes.started.pop()
        if process.poll() is None:
            processes.kill(process)


@pytest.fixture
def fault_outcome(request):
    """Call with the scenario's name, its `Tally` and how Loom recovered, before asserting."""

    def record(scenario: str, counted: Tally, recovered: str) -> Tally:
        _outcomes[request.node.nodeid] = Outcome(scenario, counted.records, counted.lost, counted.duplicated, recovered)
        return counted

    return record


@pytest.fixture(scope="module")
def own_broker(services_dir):
    """A broker of the module's own, which its scenarios may kill without hurting other tests."""
    broker = KafkaBroker(services_dir / f"faults-{uuid.uuid4().hex[:6]}", libs_dir=CACHE / "kafka-libs").start()
    yield broker
    broker.stop()


class OwnPostgres:
    """A PostgreSQL a test may stop and start again: same data, same socket, so the same URI."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.server = start_postgres(data_dir)
        self.uri = self.server.uri

    def stop(self) -> None:
        self.server.stop()

    def start(self) -> None:
        self.server = start_postgres(self.data_dir)
        assert self.server.uri == self.uri


@pytest.fixture
def own_postgres(services_dir):
    """A PostgreSQL of the test's own, which it may stop without hurting other tests."""
    server = OwnPostgres(services_dir / f"faults-pg-{uuid.uuid4().hex[:6]}")
    yield server
    server.stop()


# -- writing docs/reliability.md ------------------------------------------------------------------
def pytest_collection_modifyitems(session, config, items):
    for item in items:
        if _is_fault(item):
            _, line, _ = item.location
            _collected[item.nodeid] = (str(Path(item.path).relative_to(FAULTS)), line, item.nodeid)
    # Only part of the suite asked for by node id: its numbers are not the page's.
    _narrowed.extend(arg for arg in config.args if "::" in arg)


def pytest_deselected(items):
    _narrowed.extend(item.nodeid for item in items if _is_fault(item))


def pytest_runtest_logreport(report):
    if report.nodeid in _collected and (report.when == "call" or report.failed or report.skipped):
        _passed[report.nodeid] = _passed.get(report.nodeid, True) and report.passed


def pytest_sessionfinish(session, exitstatus):
    modules = {p.name for p in FAULTS.glob("test_*.py")}
    ran = {Path(order[0]).name for order in _collected.values()}
    complete = (_collected and not _narrowed and modules <= ran
                and all(nodeid in _outcomes and nodeid in _passed for nodeid in _collected))
    if complete:
        ordered = sorted(_collected, key=lambda nodeid: _collected[nodeid])
        write_page([(_outcomes[nodeid], _passed[nodeid]) for nodeid in ordered])


def pytest_terminal_summary(terminalreporter):
    if not _outcomes:
        return
    terminalreporter.section("fault outcomes")
    for nodeid in sorted(_outcomes, key=lambda n: _collected.get(n, (n,))):
        o = _outcomes[nodeid]
        held = {True: "holds", False: "FAILS", None: "?"}[_passed.get(nodeid)]
        terminalreporter.write_line(f"{held:5}  {o.scenario}: {o.records} records, {o.lost} lost, "
                                    f"{o.duplicated} duplicated ({o.recovered})")
