"""Every command README.md shows works as written: its ```sh blocks and the backticked commands of
its `loom` table and prose are parsed, and each runs against the test services as COMMANDS says.

A command the README gains that COMMANDS does not know fails here, and so does a row of COMMANDS
the README no longer shows: README and test change together. Placeholders (F, D, ID, NAME, QUERY,
a partition key) are filled with real values; a long-running command (`loom dev`, `dagster dev`,
`dg dev`, `loom serve-metrics`) is started on a free port, checked ready and stopped; `make dev` and
`make test` are checked to be Makefile targets running those commands."""

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from loom_assets.demo import session
from loom_assets.ports import free_port
from tests.conftest import CACHE
from tests.integration.test_search import corpus_url  # noqa: F401 (a fixture: emails, events, … to find)
from tests.integration.test_spine import DEVICE, flat, invoke, produce

pytestmark = pytest.mark.integration

PROJECT_ROOT = Path(__file__).resolve().parents[2]
README = PROJECT_ROOT / "README.md"
BIN = Path(sys.executable).parent  # the environment's `loom`, `dagster` and `dg`
COMMAND_WORDS = ("loom", "dagster", "dg", "make", "pip")
# An account configured in the developer's environment would make `loom fetch` reach the network.
ACCOUNT_VARIABLES = re.compile(r"LOOM_(EMAIL|ICAL|CALDAV|CALENDAR|HACKERNEWS)_")


# -- reading the README --------------------------------------------------------------------------
def readme_commands(text: str) -> list[str]:
    """The commands README.md shows, in order, once each: the lines of its ```sh blocks (without
    comments) and every backticked text that starts with a command and a word more (`loom …`,
    `make …`, `scripts/…`; a tool's bare name, `loom`, is no command)."""
    found: list[str] = []
    for block in re.findall(r"^[ \t]*```sh\n(.*?)^[ \t]*```", text, flags=re.DOTALL | re.MULTILINE):
        found += [re.sub(r"\s+#.*$", "", line).strip() for line in block.splitlines()
                  if line.strip() and not line.lstrip().startswith("#")]
    prose = re.sub(r"^[ \t]*```.*?^[ \t]*```", "", text, flags=re.DOTALL | re.MULTILINE)
    for code in re.findall(r"`([^`]+)`", prose):
        command = " ".join(code.replace("\\|", "|").split())
        first = command.split(" ")[0]
        if (first in COMMAND_WORDS or first.startswith("scripts/")) and " " in command:
            found.append(command)
    return list(dict.fromkeys(found))


# -- how each README command is checked ----------------------------------------------------------
Step = str | Callable[[dict], None]  # a command line (with {PLACEHOLDERS}) or a set-up function


@dataclass(frozen=True)
class Run:
    """Run the steps in order against fresh test services (a new database, empty topics, a new
    Dagster instance): each command exits 0, and the last one's output holds `expect`."""
    steps: tuple[Step, ...]
    expect: str = ""
    services: bool = True
    timeout: float = 300


@dataclass(frozen=True)
class Serve:
    """A long-running command: started (after `setup`), answering `ready` over HTTP, then stopped."""
    command: str
    ready: str
    expect: str = ""


@dataclass(frozen=True)
class LoomDev:
    """`loom dev`: its own embedded services under a new LOOM_HOME; ready when its stack file and
    its Dagster UI are; a second terminal's `loom status` finds them; Ctrl-C stops it all and
    removes the stack file."""
    command: str


@dataclass(frozen=True)
class MakeTarget:
    """A Makefile target whose recipe runs `runs` (itself checked by its own row)."""
    target: str
    runs: str


@dataclass(frozen=True)
class Mention:
    """The README names a command whose full form is the row `of`: `--help` works here."""
    of: str


@dataclass(frozen=True)
class Script:
    """A script of the repository: present, executable, and valid shell."""
    path: str


@dataclass(frozen=True)
class Extra:
    """`pip install -e '.[NAME]'`: the extra exists (installing it is the extra's own business)."""
    name: str


def app_window(ctx: dict) -> None:
    """Two app events of DEVICE landed and processed: one window of app_lifecycle with rows."""
    produce(ctx["bootstrap"], [("os.events.app_lifecycle.raw", flat(datetime.now(UTC), app_identifier=a,
                                                                    event_type="foreground"))
                               for a in ("com.slack.Slack", "com.spotify.music")])
    invoke("process", "--through-now", "--flow", "app_lifecycle")
    from loom_assets.windows import partition_key

    with psycopg.connect(ctx["database_url"]) as conn:
        window = conn.execute("SELECT min(window_start) FROM loom_offset_log WHERE flow = 'app_lifecycle'"
                              " AND end_offset > start_offset").fetchone()[0]
    ctx["PARTITION"] = partition_key(window)


def app_events(ctx: dict) -> None:
    produce(ctx["bootstrap"], [("os.events.app_lifecycle.raw",
                                flat(datetime.now(UTC) - timedelta(minutes=10), app_identifier="com.slack.Slack",
                                     event_type="launch"))])


def landed(ctx: dict) -> None:
    with psycopg.connect(ctx["database_url"]) as conn:
        assert conn.execute("SELECT count(*) FROM app_lifecycle_enriched").fetchone()[0] > 0


def search_corpus(ctx: dict) -> None:
    ctx["env"]["DATABASE_URL"] = ctx["corpus_url"]


def a_region(ctx: dict) -> None:
    invoke("regions", "add", ctx["NAME"], "--lat", "37.7749", "--lon", "-122.4194")


MATERIALIZE = ("dagster asset materialize -m loom_assets.definitions --select 'group:app_lifecycle' "
               "--partition 2026-11-24-06:05")
JOB_EXECUTE = ("dagster job execute -m loom_assets.definitions -j app_lifecycle_job "
               "--tags '{\"dagster/partition\": \"2026-11-24-06:05\"}'")
TRAIN = "loom train activity [--out PATH] [--seed 0]"
SEARCH = 'loom search "QUERY" [--flow F] [--since 7d|DATE] [--limit 10] [--json]'
REPROCESS = "loom reprocess --flow F --since D [--submit] [--stage S …]"
SERVE_METRICS = "loom serve-metrics [--port 9464]"
PROCESS = "loom process [--flow F] [--through-now]"

# README command → how it is checked. Ports are free ones ({PORT}); F is app_lifecycle.
COMMANDS: dict[str, object] = {
    "make dev": MakeTarget("dev", runs="loom dev"),
    "make test": MakeTarget("test", runs="pytest"),
    "loom dev": LoomDev("loom dev --port {PORT}"),
    "loom replay --demo [--minutes N] [--speed X] [--event-time]": Run((
        "loom replay --demo --minutes 1", "loom replay --demo --minutes 0.2 --speed 600",
        "loom replay --demo --minutes 1 --event-time"), expect="produced"),
    PROCESS: Run((app_events, "loom process --flow {F}", "loom process --flow {F} --through-now", landed)),
    "loom status [--json]": Run((app_events, "loom status", "loom status --json"), expect='"flow": "app_lifecycle"'),
    REPROCESS: Run((app_window, "loom reprocess --flow {F} --since {D}", "loom reprocess --flow {F} --since {D} --submit",
                    "loom reprocess --flow {F} --since {D} --stage enriched"), expect="stale windows"),
    SEARCH: Run((search_corpus, "loom search {QUERY} --flow email --since 7d --limit 10 --json",
                 "loom search {QUERY} --since {DATE}"), expect="XK7Q2P"),
    "loom fetch email|calendar|hackernews": Run((
        "loom fetch email", "loom fetch calendar", "loom fetch hackernews"), expect="hackernews: fetched"),
    "loom erase --device ID [--yes]": Run((app_window, "loom erase --device {ID} --yes"), expect="0 rows of"),
    "loom regions add NAME --lat --lon [--radius 100] [--type home|work|custom]": Run((
        "loom regions add {NAME} --lat 37.7749 --lon -122.4194 --radius 100 --type home",
        "loom regions add Park --type custom --polygon '[[-122.45, 37.77], [-122.45, 37.76], [-122.44, 37.76]]'"),
        expect="region"),
    "loom regions list [--json]": Run((a_region, "loom regions list", "loom regions list --json"), expect='"name"'),
    "loom regions remove NAME": Run((a_region, "loom regions remove {NAME}"), expect="removed"),
    TRAIN: Run(("loom train activity --out {OUT} --seed 0",), expect="wrote", services=False, timeout=600),
    SERVE_METRICS: Serve("loom serve-metrics --port {PORT}", ready="/healthz", expect="events_processed_total"),
    "loom topics create": Run(("loom topics create",), expect="topic(s)"),
    "loom migrate": Run(("loom migrate",), expect="none pending"),
    "loom serve [--host 127.0.0.1] [--port 3001]": Serve("loom serve --host 127.0.0.1 --port {PORT}",
                                                       ready="/api/devices?tz=UTC"),
    "make screenshot": MakeTarget("screenshot", runs="bench/day.py --people 1 --screenshot docs/day.png"),
    "dagster dev": Serve("dagster dev -p {PORT}", ready="/server_info"),
    "dg dev": Serve("dg dev -p {PORT}", ready="/server_info"),
    "dg check defs": Run(("dg check defs",), expect="All definitions loaded successfully", services=False),
    MATERIALIZE: Run((app_window, MATERIALIZE.replace("2026-11-24-06:05", "{PARTITION}")), expect="RUN_SUCCESS"),
    JOB_EXECUTE: Run((app_window, JOB_EXECUTE.replace("2026-11-24-06:05", "{PARTITION}")), expect="RUN_SUCCESS"),
    'loom search "flight to lisbon"': Run((search_corpus, 'loom search "flight to lisbon"'), expect="XK7Q2P"),
    "loom reprocess": Mention(of=REPROCESS),
    "loom train activity": Mention(of=TRAIN),
    "loom search": Mention(of=SEARCH),
    "loom process": Run((app_events, "loom process")),
    "loom process --flow app_lifecycle": Run((app_events, "loom process --flow app_lifecycle")),
    "loom process --flow app_lifecycle --through-now": Run((
        app_events, "loom process --flow app_lifecycle --through-now", landed)),
    "dagster asset materialize": Mention(of=MATERIALIZE),
    "dagster job execute": Mention(of=JOB_EXECUTE),
    "loom reprocess --flow location --since D --stage georegions --stage places": Run((
        "loom reprocess --flow location --since {D} --stage georegions --stage places",), expect="location"),
    "loom fetch calendar": Run(("loom fetch calendar",), expect="calendar: fetched"),
    "loom status": Run(("loom status",), expect="app_lifecycle"),
    "loom serve-metrics": Mention(of=SERVE_METRICS),
    "dagster instance concurrency set geocoder 1": Run(("dagster instance concurrency set geocoder 1",)),
    "loom fetch email": Run(("loom fetch email",), expect="email: fetched"),
    "loom fetch hackernews": Run(("loom fetch hackernews",), expect="hackernews: fetched"),
    "make timescaledb": MakeTarget("timescaledb", runs="scripts/timescaledb.sh"),
    "pip install -e '.[parakeet]'": Extra("parakeet"),
    "scripts/test-anytime.sh [PYTEST_ARGS…]": Script("scripts/test-anytime.sh"),
    "make bench": MakeTarget("bench", runs="bench/landing.py"),
}

SHOWN = readme_commands(README.read_text(encoding="utf-8"))


def test_the_readme_and_the_table_show_the_same_commands():
    unknown = [c for c in SHOWN if c not in COMMANDS]
    assert not unknown, f"README commands this test cannot run yet: add them to COMMANDS: {unknown}"
    gone = [c for c in COMMANDS if c not in SHOWN]
    assert not gone, f"rows of COMMANDS the README no longer shows: {gone}"


def test_the_parser_finds_fenced_tabled_and_inline_commands():
    text = ("```sh\nmake dev    # run it\n# a comment\n```\n| `loom a [--x 1\\|2]` | b |\nrun `loom\nb c` or "
            "`loom/failing` or `LOOM_HOME` or `make`.\n1. a step:\n   ```python\n   loom = `x`\n   ```\n")
    assert readme_commands(text) == ["make dev", "loom a [--x 1|2]", "loom b c"]


# -- running them --------------------------------------------------------------------------------
def fill(command: str, ctx: dict) -> list[str]:
    """The command's words with {PLACEHOLDERS} filled (a filled value stays one word)."""
    return [re.sub(r"\{([A-Z]+)\}", lambda m: str(ctx[m.group(1)]), word) for word in shlex.split(command)]


def run(command: str, ctx: dict, timeout: float = 300) -> str:
    words = fill(command, ctx)
    result = subprocess.run(words, cwd=PROJECT_ROOT, env=ctx["env"], capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(words)}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


def terminal(extra: dict[str, str] | None = None, drop: tuple[str, ...] = ()) -> dict[str, str]:
    """A shell with the project's environment active (as `source .venv/bin/activate` makes it)."""
    env = {k: v for k, v in os.environ.items() if k not in drop and not ACCOUNT_VARIABLES.match(k)}
    return {**env, "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", "VIRTUAL_ENV": str(BIN.parent),
            "HF_HUB_OFFLINE": "1", **(extra or {})}


def http_get(url: str, timeout: float = 5) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


def wait_until_served(url: str, process: subprocess.Popen, log: Path, timeout: float = 240) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"exited with {process.returncode}:\n{log.read_text()[-3000:]}"
        try:
            return http_get(url)
        except OSError:
            time.sleep(1)
    raise AssertionError(f"{url} not served in {timeout} s:\n{log.read_text()[-3000:]}")


def start(words: list[str], env: dict, log: Path) -> subprocess.Popen:
    # Its own process group, so that stopping it reaches what it started, as Ctrl-C does.
    return subprocess.Popen(words, cwd=PROJECT_ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def stop(process: subprocess.Popen, timeout: float = 90) -> int:
    """Ctrl-C to the command's process group; killed if it does not end in `timeout`."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise AssertionError(f"{process.args} did not stop on Ctrl-C within {timeout} s") from None
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # whatever it left behind in its group
        except ProcessLookupError:
            pass


def check_run(check: Run, ctx: dict) -> None:
    output = ""
    for step in check.steps:
        if callable(step):
            step(ctx)
        else:
            output = run(step, ctx, check.timeout)
    assert check.expect in output, output[-3000:]


def check_serve(check: Serve, ctx: dict, tmp_path: Path) -> None:
    ctx["PORT"] = free_port()
    log = tmp_path / "serve.log"
    process = start(fill(check.command, ctx), ctx["env"], log)
    try:
        wait_until_served(f"http://127.0.0.1:{ctx['PORT']}{check.ready}", process, log)
        if check.expect:
            assert check.expect in http_get(f"http://127.0.0.1:{ctx['PORT']}/metrics")
    finally:
        stop(process)


def check_loom_dev(check: LoomDev) -> None:
    # Not under pytest's tmp_path: as root the embedded PostgreSQL runs as its own user, which must
    # traverse every parent folder (tests/conftest.py). Kafka's jars come from the tests' cache.
    home = Path(tempfile.mkdtemp(prefix="loom-dev-"))
    (home / "cache").mkdir()
    (home / "cache" / "kafka-libs").symlink_to(CACHE / "kafka-libs")
    # A home the demo ran in before: live events at once, not a first start's whole-day catch-up
    # (minutes of processing; its parts are tested in test_demo_session.py and test_demo_day.py).
    (home / session.MARKER).write_text("{}")
    env = terminal({"LOOM_HOME": str(home)}, drop=("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "DAGSTER_HOME",
                                                   "LOOM_DAGSTER_URL"))
    port = free_port()
    log = home / "dev.log"
    process = start(fill(check.command, {"PORT": port}), env, log)
    stack_path = home / "stack.json"
    try:
        deadline = time.monotonic() + 300
        while not stack_path.exists():
            assert process.poll() is None, f"loom dev exited with {process.returncode}:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no stack file:\n{log.read_text()[-3000:]}"
            time.sleep(1)
        stack = json.loads(stack_path.read_text())
        assert stack["pid"] == process.pid and stack["dagster_url"] == f"http://127.0.0.1:{port}"
        assert oct(stack_path.stat().st_mode & 0o777) == "0o600"
        wait_until_served(f"{stack['dagster_url']}/server_info", process, log)
        assert '"devices"' in http_get(f"{stack['day_url']}/api/devices?tz=UTC")  # the day page beside it
        # A second terminal: nothing set but LOOM_HOME.
        second = subprocess.run(["loom", "status", "--json"], cwd=PROJECT_ROOT, env=env, capture_output=True,
                                text=True, timeout=300)
        assert second.returncode == 0, second.stderr[-3000:]
        assert "app_lifecycle" in {flow["flow"] for flow in json.loads(second.stdout)}
        code = stop(process, timeout=120)
        assert code == 0, log.read_text()[-3000:]
        assert not stack_path.exists()
    finally:
        if process.poll() is None:
            stop(process, timeout=120)
        shutil.rmtree(home, ignore_errors=True)


def check_make_target(check: MakeTarget) -> None:
    makefile = (PROJECT_ROOT / "Makefile").read_text(encoding="utf-8")
    match = re.search(rf"^{re.escape(check.target)}:.*\n((?:\t.*\n?)+)", makefile, flags=re.MULTILINE)
    assert match, f"no Makefile target {check.target}"
    assert check.runs in match.group(1), match.group(1)


@pytest.mark.parametrize("command", SHOWN)
def test_the_readme_command_works_as_written(command, request, tmp_path):
    check = COMMANDS.get(command)
    assert check is not None, f"{command!r} is in the README but not in COMMANDS"
    if isinstance(check, MakeTarget):
        check_make_target(check)
    elif isinstance(check, Mention):
        assert check.of in SHOWN
        words = [w for w in shlex.split(command) if not w.startswith(("[", '"'))]
        assert subprocess.run([*words, "--help"], cwd=PROJECT_ROOT, env=terminal(), capture_output=True,
                              timeout=120).returncode == 0
    elif isinstance(check, Script):
        path = PROJECT_ROOT / check.path
        assert os.access(path, os.X_OK), f"{check.path} is not executable"
        assert subprocess.run(["bash", "-n", str(path)], timeout=30).returncode == 0
    elif isinstance(check, Extra):
        pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
        assert check.name in pyproject["project"]["optional-dependencies"]
    elif isinstance(check, LoomDev):
        check_loom_dev(check)
    else:
        ctx = {"F": "app_lifecycle", "ID": DEVICE, "NAME": "Home", "QUERY": "flight to lisbon",
               "D": (datetime.now(UTC) - timedelta(days=1)).date().isoformat(),
               "DATE": (datetime.now(UTC) - timedelta(days=7)).date().isoformat(), "OUT": tmp_path / "activity.pt"}
        if isinstance(check, Serve) or check.services:
            ctx |= request.getfixturevalue("loom_env")
        if any(step is search_corpus for step in getattr(check, "steps", ())):
            ctx["corpus_url"] = request.getfixturevalue("corpus_url")
        ctx["env"] = terminal()  # after loom_env: its DATABASE_URL, broker, DAGSTER_HOME and LOOM_HOME
        if isinstance(check, Serve):
            check_serve(check, ctx, tmp_path)
        else:
            check_run(check, ctx)
