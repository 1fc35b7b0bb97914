"""Where a stage that benefits from a GPU runs (deploy/README.md#gpu-stages): one Kubernetes
request and one Dagster pool, declared with `gpu=True` on the stage."""

import json

# The concurrency pool of every GPU stage, so the steps on a machine's GPU do not outnumber it
# (`dagster instance concurrency set gpu N`, N the GPUs of the gpu node pool; a pool without a
# limit takes dagster.yaml's `pools.default_limit`, and with none set it runs freely).
GPU_POOL = "gpu"

# What the pod of a GPU step (or run) asks of Kubernetes, in dagster-k8s's `dagster-k8s/config`
# shape: one NVIDIA GPU, on a node labelled `loom/node-pool=gpu`, tolerating the `nvidia.com/gpu`
# taint GPU nodes carry (deploy/README.md#gpu-stages).
GPU_K8S_CONFIG = {
    "container_config": {"resources": {"limits": {"nvidia.com/gpu": 1}}},
    "pod_spec_config": {
        "node_selector": {"loom/node-pool": "gpu"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    },
}

# Op tags: the k8s_job_executor runs each step in a pod of its own and applies these per step.
GPU_OP_TAGS = {"dagster-k8s/config": GPU_K8S_CONFIG}
# Run tags: the K8sRunLauncher applies a run's `dagster-k8s/config` to the run's pod, which is
# where a flow job's in-process steps run (run tags are strings, hence JSON).
GPU_RUN_TAGS = {"dagster-k8s/config": json.dumps(GPU_K8S_CONFIG, sort_keys=True)}


def stage_pool(gpu: bool, pool: str | None, stage: str) -> str | None:
    """The stage's concurrency pool: `gpu` for a GPU stage, which may then name no other."""
    if gpu and pool not in (None, GPU_POOL):
        raise TypeError(f"{stage} runs on a GPU (pool `{GPU_POOL}`) and cannot also be in pool `{pool}`")
    return GPU_POOL if gpu else pool
