"""`loom dev`: the embedded services, the day page, the demo and Dagster, in one process tree.

Started by the `loom dev` command (cli.py); its services' addresses go to LOOM_HOME/stack.json
(stack.py) for `loom` in other terminals. On a fresh home the demo first catches up a whole day
(demo/session.py, processing.process_backlog) before the daemon starts.
"""

import os
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime

import click

from loom_assets import stack as stack_file
from loom_assets.cli import PROJECT_ROOT, _instance, topic_specs
from loom_assets.cli_errors import die
from loom_assets.redaction import redact
from loom_assets.settings import settings


def definitions():
    from loom_assets import definitions as defs

    return defs


def run(port: int, day_port: int, demo: bool = True) -> None:
    """PostgreSQL, Kafka, migrations and topics, the day page, the demo (`demo`), then Dagster's
    UI and daemon until Ctrl-C or a `kill`; the stack file says where they are meanwhile."""
    from loom_assets.embedded import services

    config = settings()
    config.home.mkdir(parents=True, exist_ok=True)
    if running := stack_file.running_stack(config.home):
        die(f"`loom dev` is already running for {config.home} (pid {running['pid']}); stop it, or use another LOOM_HOME")
    given_url = os.environ.get("DATABASE_URL")
    stack = services.start_dev_services(config)
    os.environ.update(stack.environment)
    # The embedded database's URL is printed whole, for other shells to use; one from the
    # environment is the user's own, and its password stays out of the terminal.
    click.echo(f"PostgreSQL: {redact(given_url) if given_url else stack.environment['DATABASE_URL']}")
    click.echo(f"Kafka:      {stack.environment['KAFKA_BOOTSTRAP_SERVERS']} ({stack.broker_kind})")
    from loom_assets.resources.warehouse import apply_migrations

    apply_migrations(stack.environment["DATABASE_URL"])
    created = definitions().resources()["kafka"].create_topics(topic_specs())
    click.echo(f"migrations applied; {len(created)} topic(s) created")
    instance = _instance()
    _fail_orphaned_runs(instance)
    from loom_assets.flows.location import GEOCODER_POOL

    instance.event_log_storage.set_concurrency_slots(GEOCODER_POOL, 1)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)  # a plain `kill` also stops the services
    # The day page first: on a fresh home it shows the demo's catch-up filling the day in.
    from loom_assets import day
    from loom_assets.ports import port_is_free

    day_server = day.server(stack.environment["DATABASE_URL"], port=day_port, dagster_url=f"http://127.0.0.1:{port}",
                            tile_url=config.map_tile_url)
    day_url = None
    if port_is_free(day_port):
        day.serve_in_background(day_server)
        day_url = f"http://127.0.0.1:{day_port}"
        click.echo(f"Your day on {day_url}")
    else:
        click.echo(click.style(f"port {day_port} is taken: the day page is not served (--day-port N)", fg="yellow"))
    # Where the services are, for `loom` in other terminals.
    addresses = {**stack.environment, "dagster_url": f"http://127.0.0.1:{port}", "day_url": day_url}
    child = None
    try:
        click.echo(f"other terminals' `loom` commands find them in {stack_file.write_stack(config.home, addresses)}")
        if demo:
            add_demo_regions(stack.environment["DATABASE_URL"])
            _demo_session(instance, port)  # on a fresh home: the catch-up, before the daemon starts
        click.echo(f"Dagster UI on http://127.0.0.1:{port} (Ctrl-C stops everything)")
        command = [sys.executable, "-m", "dagster", "dev", "-h", "127.0.0.1", "-p", str(port),
                   "-w", str(PROJECT_ROOT / "workspace.yaml")]
        # `dagster dev` ignores SIGINT if it inherits it ignored: reset it for the child. It runs in
        # DAGSTER_HOME, beside its own dagster.yaml (the repository's copy would only confuse it).
        child = subprocess.Popen(command, cwd=os.environ["DAGSTER_HOME"],
                                 preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        child.wait()
    except KeyboardInterrupt:
        if child is not None:
            child.send_signal(signal.SIGINT)
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
    finally:
        day_server.should_exit = True
        stack_file.remove_stack(config.home)
        stack.stop()


def _fail_orphaned_runs(instance) -> None:
    """Runs a previous `loom dev` left started died with it; marked failed, they free their
    run-queue slots (and their windows can be re-run)."""
    from dagster import DagsterRunStatus, RunsFilter

    live = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]
    for run in instance.get_runs(RunsFilter(statuses=live)):
        instance.report_run_failed(run, "the Dagster process running it stopped (loom dev restarted)")
        click.echo(f"marked orphaned run {run.run_id} failed")


def _stop_on_sigterm(signum, frame) -> None:
    raise KeyboardInterrupt


def add_demo_regions(url: str) -> None:
    """The demo person's Home and Work, when no georegion is defined yet."""
    from loom_assets.demo import DEMO_REGIONS
    from loom_assets.regions import add_region, list_regions

    if list_regions(url):
        return
    for name, region_type, place, radius_m in DEMO_REGIONS:
        add_region(url, name, region_type=region_type, latitude=place.lat, longitude=place.lon, radius_m=radius_m)
    click.echo(f"added the demo georegions: {', '.join(r[0] for r in DEMO_REGIONS)}")


def _demo_session(instance, port: int) -> None:
    """`loom dev`'s demo: on a fresh LOOM_HOME, yesterday and today so far at once (Kafka
    timestamps = event times), processed here in ranged runs before the daemon starts (the UI
    alone shows them meanwhile); then live events from the very instant the catch-up ended."""
    from loom_assets.demo import LOCAL_TZ, session
    from loom_assets.processing import process_backlog

    start = session.demo_start(settings().home, datetime.now(UTC))
    session.mark_started(settings().home, start)
    if start.catch_up_from is not None:
        session.produce_catch_up(definitions().resources()["kafka"].producer(), start, echo=click.echo)
    threading.Thread(target=_demo_forever, args=(start.live_from, start.catch_up_from is None), daemon=True).start()
    if start.catch_up_from is not None:
        # The UI without the daemon (whose sensors would ask for the same windows again).
        ui = subprocess.Popen([sys.executable, "-m", "dagster_webserver", "-h", "127.0.0.1", "-p", str(port),
                               "-w", str(PROJECT_ROOT / "workspace.yaml")], cwd=os.environ["DAGSTER_HOME"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        click.echo(f"Dagster UI on http://127.0.0.1:{port} while the catch-up runs (the daemon starts after it)")
        try:
            ok = process_backlog(instance, definitions().FLOWS, datetime.now(UTC), echo=click.echo)
        finally:
            ui.terminate()
            ui.wait(timeout=30)
        click.echo(f"caught up to {start.live_from.astimezone(LOCAL_TZ):%H:%M}{'' if ok else ' (some runs failed)'}; "
                   "continuing live")


def _demo_forever(live_from: datetime, calendar_on_start: bool = True) -> None:
    """The demo producer of `loom dev`: real-time synthetic events from `live_from` on."""
    from loom_assets.demo.session import produce_live

    kafka = definitions().resources()["kafka"]
    produce_live(kafka.producer, live_from, calendar_on_start)
