"""The fetchers' schedules: no run (and no noise in the run list) until an account is configured,
then one run a tick."""

import pytest
from dagster import build_schedule_context

from loom_assets.flows import calendar, email, hackernews

ACCOUNT_SETTINGS = {
    email: {"LOOM_EMAIL_ADDRESS_1": "me@example.com", "LOOM_EMAIL_PASSWORD_1": "secret"},
    calendar: {"LOOM_ICAL_URL_1": "https://calendar.example.com/me.ics"},
    hackernews: {"LOOM_HACKERNEWS_USERNAME": "pg"},
}


@pytest.mark.parametrize("flow", [email, calendar, hackernews], ids=lambda f: f.FLOW.name)
def test_a_fetch_schedule_runs_only_once_an_account_is_configured(flow, monkeypatch):
    for name in ACCOUNT_SETTINGS[email] | ACCOUNT_SETTINGS[calendar] | ACCOUNT_SETTINGS[hackernews]:
        monkeypatch.delenv(name, raising=False)
    idle = flow.FLOW.fetcher[1].evaluate_tick(build_schedule_context())
    assert not idle.run_requests and "no" in idle.skip_message and "accounts configured" in idle.skip_message
    for name, value in ACCOUNT_SETTINGS[flow].items():
        monkeypatch.setenv(name, value)
    busy = flow.FLOW.fetcher[1].evaluate_tick(build_schedule_context())
    assert len(busy.run_requests) == 1 and busy.skip_message is None
    assert flow.FLOW.fetcher[1].job_name == f"{flow.FLOW.name}_fetch"
