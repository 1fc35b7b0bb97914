"""What the flows declare decides the order `loom process` lands them in and the late-input
sensors; a stage reading state must declare it."""

import pandas as pd
import pytest
from dagster import AssetKey, RetryPolicy

from loom_assets import definitions
from loom_assets.flows.base import Carry, EventTime, Flow


def test_a_flow_comes_after_the_flows_whose_tables_it_reads():
    names = [flow.name for flow in definitions.FLOWS]
    for flow in definitions.FLOWS:
        for _, read in flow.reads:
            assert names.index(read.asset.path[0]) < names.index(flow.name)
    reversed_order = definitions.in_reading_order(tuple(reversed(definitions.FLOWS)))
    assert [f.name for f in reversed_order].index("location") < [f.name for f in reversed_order].index("motion")


def test_every_declared_read_of_another_flow_has_its_late_input_sensor():
    sensors = {s.name for s in definitions.defs.sensors}
    reads = [(flow, stage, read) for flow in definitions.FLOWS for stage, read in flow.reads]
    assert reads
    for flow, stage, read in reads:
        assert f"{flow.name}_{stage.path[-1]}_after_{read.asset.path[0]}" in sensors


def test_a_stage_that_takes_state_must_declare_what_it_carries():
    with pytest.raises(ValueError, match="not declared in events/topics.py"):
        Flow(name="app_lifecycle", topics=("example.raw",), description="")
    flow = Flow(name="app_lifecycle", topics=("os.events.app_lifecycle.raw",), description="")  # a copy
    with pytest.raises(TypeError, match="declares no `carry`"):
        @flow.stage(logic_version="1", rules_version="1", retry=RetryPolicy())
        def enriched(raw: pd.DataFrame, state: pd.DataFrame) -> pd.DataFrame:
            return raw

    @flow.stage(logic_version="1", rules_version="1", retry=RetryPolicy(), carry=Carry(per=("device_id",)),
                reads={"fixes": EventTime(AssetKey(["location", "raw"]))})
    def carried(raw: pd.DataFrame, state: pd.DataFrame, fixes: pd.DataFrame) -> pd.DataFrame:
        return raw

    assert flow.ordered and flow.job.tags["loom/ordered"] == "app_lifecycle"
    assert not {"state", "fixes"} & set(carried.keys_by_input_name)  # the framework passes them
    assert AssetKey(["location", "raw"]) in carried.asset_deps[carried.key]
    assert carried.metadata_by_key[carried.key]["carry"]["per"] == ["device_id"]


def test_every_topic_is_declared_once_and_read_by_one_flow():
    from loom_assets.demo.constants import DEMO_TOPICS
    from loom_assets.events.topics import TOPICS

    landed = [topic for flow in definitions.FLOWS for topic in flow.topics]
    assert sorted(landed) == sorted(TOPICS)  # each declared topic lands in exactly one flow
    assert set(DEMO_TOPICS) <= set(TOPICS)
    assert {flow.name for flow in definitions.FLOWS if flow.fetcher} == {"email", "calendar", "hackernews"}
    jobs = {job.name for job in definitions.defs.resolve_all_job_defs()}
    assert {f"{name}_fetch" for name in ("email", "calendar", "hackernews")} <= jobs
