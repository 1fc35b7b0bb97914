"""Loom's run logger: the JSON lines it prints hold no URL credential or query, whether the
message, an exception or a Dagster event carried it."""

import json

from dagster import job, op

from loom_assets.run_logs import RUN_LOG_CONFIG, console_logger

SECRET_URL = "https://alice:hunter2@calendar.example.com/ical/private-0123abcd/basic.ics?token=t0ken"


@op
def fetch_once(context):
    context.log.info("fetching %s", SECRET_URL)
    raise ValueError(f"404 Client Error: Not Found for url: {SECRET_URL}")


@job(logger_defs={"console": console_logger}, config=RUN_LOG_CONFIG)
def failing_fetch():
    fetch_once()


def test_run_log_lines_hold_no_url_secret(capfd):
    assert not failing_fetch.execute_in_process(raise_on_error=False).success
    printed = capfd.readouterr().err
    lines = [json.loads(line) for line in printed.splitlines() if line.startswith("{")]
    assert any(line["msg"].endswith("fetching https://calendar.example.com/ical/private-…/basic.ics?…")
               for line in lines)
    failure = next(line for line in lines if "STEP_FAILURE" in json.dumps(line))
    assert "404 Client Error" in json.dumps(failure)
    for secret in ("hunter2", "alice", "0123abcd", "t0ken"):
        assert secret not in printed
