"""deploy/ says what production runs: the image installs what the Makefile installs, the
instance config is one Dagster accepts, and the stages that benefit from a GPU ask for one."""

import importlib
import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
import yaml

from loom_assets import definitions
from loom_assets.flows.gpu import GPU_K8S_CONFIG, GPU_POOL

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
# The stages whose models use CUDA when present (docs/architecture.md#gpu-stages).
GPU_STAGES = {"audio/transcripts", "camera_vision/objects"}
# Programs the stages run, and the Debian packages that provide them (with tesseract's English data).
RUN_TIME_PACKAGES = {"tesseract": ("tesseract-ocr", "tesseract-ocr-eng"), "node": ("nodejs",), "npm": ("npm",)}


def _commands(lines: list[str]) -> list[list[str]]:
    """Every shell command of `lines` (continuations joined, `&&` chains split), as words."""
    text = re.sub(r"\\\n", " ", "\n".join(lines))
    return [shlex.split(part) for line in text.splitlines() for part in line.split("&&") if part.strip()]


def _pip_installs(commands: list[list[str]]) -> list[list[str]]:
    """The arguments of each `pip install`, without the quiet and cache flags a build adds."""
    noise = {"--quiet", "--no-cache-dir"}
    return [[word for word in cmd[cmd.index("install") + 1:] if word not in noise]
            for cmd in commands if "pip" in cmd and "install" in cmd]


def _makefile_installs() -> list[list[str]]:
    text = (ROOT / "Makefile").read_text()
    recipe = text.split("$(STAMP): pyproject.toml constraints.txt\n", 1)[1].split("\n\n", 1)[0]
    return _pip_installs(_commands([line.strip() for line in recipe.splitlines()
                                    if not line.strip().startswith("#")]))


def _docker_runs() -> list[list[str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    return _commands([line.removeprefix("RUN ") for line in text.splitlines() if line.startswith("RUN ")])


def test_the_image_installs_python_packages_as_the_makefile_does():
    make = [args for args in _makefile_installs() if args != ["--upgrade", "pip"]]
    docker = _pip_installs(_docker_runs())
    assert "COPY constraints.txt" in DOCKERFILE.read_text()
    # PyTorch first, on the constraints; then Loom on them (the Makefile with `dev`, the image with `k8s`).
    assert make[0] == docker[0] == ["-c", "constraints.txt", "torch"]
    assert make[1] == ["-c", "constraints.txt", "-e", ".[dev]"]
    assert docker[1] == ["-c", "constraints.txt", "-e", ".[k8s]"]
    # The wheels installed without their requirements: the same ones, at the same versions.
    assert make[2][0] == docker[2][0] == "--no-deps"
    assert sorted(make[2][1:]) == sorted(docker[2][1:]) and all("==" in pin for pin in make[2][1:])
    assert len(make) == len(docker) == 3


def test_the_image_installs_the_programs_the_stages_run():
    installed = {word for cmd in _docker_runs() if "apt-get" in cmd and "install" in cmd for word in cmd}
    system_deps = (ROOT / "scripts" / "system-deps.sh").read_text()
    for program, packages in RUN_TIME_PACKAGES.items():
        for package in packages:
            assert package in installed, f"the image lacks {package} ({program})"
            assert f"missing+=({package})" in system_deps, f"scripts/system-deps.sh lacks {package}"
    assert "espeak-ng" not in installed  # only the audio tests speak


@pytest.fixture
def instance_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_PG_URL", "postgresql+psycopg2://loom:secret@db.invalid:5432/dagster")
    shutil.copy(ROOT / "deploy" / "dagster.yaml", tmp_path / "dagster.yaml")
    return tmp_path


def test_the_production_instance_config_is_one_dagster_accepts(instance_dir):
    pytest.importorskip("dagster_k8s", reason="dagster-k8s is the optional `k8s` extra (pip install -e '.[k8s]')")
    from dagster._config import process_config
    from dagster._core.instance.config import dagster_instance_config
    from dagster._core.instance.ref import InstanceRef

    config, _ = dagster_instance_config(str(instance_dir))
    assert config["run_launcher"]["class"] == "K8sRunLauncher"
    assert config["concurrency"]["pools"]["default_limit"] >= 1
    ref = InstanceRef.from_dir(str(instance_dir))
    # Each component's own config, checked by its class without connecting to anything.
    for data in (ref.run_launcher_data, ref.run_storage_data, ref.event_storage_data, ref.schedule_storage_data):
        component = getattr(importlib.import_module(data.module_name), data.class_name)
        result = process_config(component.config_type(), data.config_dict)
        assert result.success, f"{data.class_name}: {result.errors}"


def _stage_ops():
    graph = definitions.defs.resolve_asset_graph()
    return {a.key.to_user_string(): a.op for a in graph.assets_defs if a.is_executable and a.op.name != "raw"
            and len(a.keys) == 1}


def test_the_gpu_stages_ask_kubernetes_for_a_gpu_and_share_the_gpu_pool():
    ops = _stage_ops()
    assert GPU_STAGES <= ops.keys()
    for key, op in ops.items():
        config = op.tags.get("dagster-k8s/config")
        if key in GPU_STAGES:
            assert op.pool == GPU_POOL
            assert json.loads(config) == GPU_K8S_CONFIG
        else:
            assert op.pool != GPU_POOL and config is None, f"{key} is not a GPU stage"
    # The flow jobs run their steps in-process, in the run's pod: the run asks for the GPU.
    for job in definitions.defs.resolve_all_job_defs():
        selected = {k.to_user_string() for k in job.asset_layer.selected_asset_keys} if job.asset_layer else set()
        if job.name.endswith("_job") and selected & GPU_STAGES:
            assert json.loads(job.tags["dagster-k8s/config"]) == GPU_K8S_CONFIG


def test_the_gpu_tags_make_a_pod_with_one_gpu_on_the_gpu_node_pool():
    pytest.importorskip("dagster_k8s", reason="dagster-k8s is the optional `k8s` extra (pip install -e '.[k8s]')")
    from dagster_k8s.job import get_user_defined_k8s_config

    op = _stage_ops()["audio/transcripts"]
    config = get_user_defined_k8s_config(dict(op.tags))
    assert config.container_config["resources"]["limits"] == {"nvidia.com/gpu": 1}
    assert config.pod_spec_config["node_selector"] == {"loom/node-pool": "gpu"}
    assert config.pod_spec_config["tolerations"][0]["key"] == "nvidia.com/gpu"


def test_a_gpu_stage_cannot_also_be_in_another_pool():
    from dagster import RetryPolicy

    from loom_assets.flows.base import Flow

    flow = Flow(name="audio", topics=("device.audio.raw",), description="")  # a copy
    with pytest.raises(TypeError, match="cannot also be in pool `geocoder`"):
        @flow.stage(logic_version="1", rules_version="1", retry=RetryPolicy(), gpu=True, pool="geocoder")
        def transcripts(raw):
            return raw


def test_a_gpu_step_runs_under_the_local_instance_of_loom_dev(tmp_path):
    """`loom dev`'s dagster.yaml sets no limit for `gpu`: the pool takes its default limit and the
    step runs (on the CPU where there is no GPU)."""
    from dagster import DagsterInstance, asset, materialize

    from loom_assets.flows.gpu import GPU_OP_TAGS

    shutil.copy(ROOT / "dagster.yaml", tmp_path / "dagster.yaml")

    @asset(pool=GPU_POOL, op_tags=GPU_OP_TAGS)
    def on_gpu() -> int:
        return 1

    with DagsterInstance.from_config(str(tmp_path)) as instance:
        assert materialize([on_gpu], instance=instance).success
        default_limit = yaml.safe_load((ROOT / "dagster.yaml").read_text())["concurrency"]["pools"]["default_limit"]
        assert instance.event_log_storage.get_concurrency_info(GPU_POOL).slot_count == default_limit
