"""Rollout scales on Ray's own autoscaler while learner ranks stay put: the paper-8gpu RayCluster, read by Ray's
KubeRay autoscaling-config code, becomes a fake autoscaling cluster on this machine (Ray's fake_multinode node
provider: every "pod" a real raylet), and the overlay's run config places the groups on it.

Why not `ray.cluster_utils.AutoscalingCluster`: its start() and shutdown() run `ray stop --force`, which kills
every Ray process on the machine (other test sessions included), and in the Ray 2.60 wheel its constructor opens
autoscaler/_private/fake_multi_node/example.yaml, which the wheel does not ship (FileNotFoundError). This test
does what AutoscalingCluster does with the same parts: `ray start --head --autoscaling-config=...` with
RAY_FAKE_CLUSTER=1 and the fake_multinode provider, on a private port and temp dir, stopped by its process group.

Deviations from a real cluster, all in `cpu_run_config` and `fake_autoscaling_config`: the tiny model on the
transformers engine, 1 rollout replica to start with (scaled to 2 and back), 2 learner ranks (of the 4 the
learner pod could hold) on CPU (gloo) without GPUs, 1 logical CPU per actor, a 6 s idle timeout instead of the
manifest's 60 s. GPU counts per pod and per rollout replica are
the shipped ones (logical GPUs): one replica fills a rollout pod, so a second replica needs a second pod.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from tests.test_k8s import by_kind, render, run_config

ROOT = Path(__file__).parents[1]
OVERLAY = "paper-8gpu"
IDLE_TIMEOUT_MINUTES = 0.1
OBJECT_STORE_BYTES = 80 * 1024 * 1024
# No idle worker processes prestarted per logical CPU (the learner pod alone advertises 32).
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "RAY_prestart_worker_first_driver": "0",
           "RAY_enable_worker_prestart": "0"}

pytestmark = pytest.mark.slow


def fake_autoscaling_config(ray_cluster: dict, gcs_address: str) -> dict:
    """The autoscaling config Ray's KubeRay integration derives from the RayCluster, on the fake provider."""
    from ray.autoscaler._private.fake_multi_node.node_provider import FAKE_HEAD_NODE_TYPE
    from ray.autoscaler._private.kuberay.autoscaling_config import _derive_autoscaling_config_from_ray_cr

    config = _derive_autoscaling_config_from_ray_cr(ray_cluster)
    node_types = config["available_node_types"]
    node_types[FAKE_HEAD_NODE_TYPE] = node_types.pop(config["head_node_type"])
    for node_type in node_types.values():
        # Fake nodes share this machine: a bounded object store each, and no `memory` resource (Ray sizes it).
        node_type["resources"].pop("memory", None)
        node_type["resources"]["object_store_memory"] = OBJECT_STORE_BYTES
    return {**config, "head_node_type": FAKE_HEAD_NODE_TYPE, "idle_timeout_minutes": IDLE_TIMEOUT_MINUTES,
            "provider": {"type": "fake_multinode", "use_node_id_as_ip": True, "disable_node_updaters": True,
                         "disable_launch_config_check": True, "gcs_address": gcs_address}}


def cpu_run_config(objects: list[dict], model: str) -> dict:
    """The overlay's run config with the CPU substitutions listed in the module docstring."""
    tree = run_config(objects).model_dump(mode="json")
    tree["model"]["path"] = model
    tree["rollout"].update(engine="hf", replicas=1, num_cpus=1, samples_per_prompt=2, max_new_tokens=8,
                           request_timeout_s=120)
    tree["learner"].update(ranks=2, num_cpus=1, num_gpus=0, lr=1e-3, micro_batch_tokens=512)
    return tree


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stop_process_group(head: subprocess.Popen) -> None:
    """Kill everything `ray start` spawned (GCS, raylets of the fake nodes, workers), by PID and process group."""
    try:
        descendants = psutil.Process(head.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        descendants = []
    os.killpg(head.pid, signal.SIGKILL)
    for process in descendants:  # any that left the group
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    head.wait(timeout=30)
    psutil.wait_procs(descendants, timeout=30)


@pytest.fixture(scope="module")
def fake_kuberay_cluster(tiny_model):
    """(GCS address, run config tree) of a fake autoscaling cluster shaped like the overlay's RayCluster."""
    import ray

    objects = render(OVERLAY)
    (ray_cluster,) = by_kind(objects, "RayCluster")
    temp_dir = tempfile.mkdtemp(prefix="vg1k8s-", dir="/tmp")  # short: Ray's socket paths must stay < 108 bytes
    port = free_port()
    address = f"{ray.util.get_node_ip_address()}:{port}"
    config_path = Path(temp_dir) / "autoscaling.json"
    config_path.write_text(json.dumps(fake_autoscaling_config(ray_cluster, address)))
    head_params = ray_cluster["spec"]["headGroupSpec"]["rayStartParams"]
    command = [str(Path(sys.executable).with_name("ray")), "start", "--head", "--block", f"--port={port}",
               f"--autoscaling-config={config_path}", f"--temp-dir={temp_dir}",
               f"--num-cpus={head_params['num-cpus']}", f"--num-gpus={head_params['num-gpus']}",
               "--include-dashboard=false", "--disable-usage-stats", f"--object-store-memory={OBJECT_STORE_BYTES}"]
    env = {**os.environ, **RAY_ENV, "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1"}
    with open(Path(temp_dir) / "head.log", "w") as log:
        head = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield address, cpu_run_config(objects, tiny_model), temp_dir
    finally:
        stop_process_group(head)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def scaling(fake_kuberay_cluster):
    """What the driver saw: it runs in its own process, since this pytest process may already hold a Ray."""
    address, tree, temp_dir = fake_kuberay_cluster
    out = Path(temp_dir) / "facts.json"
    subprocess.run([sys.executable, "-m", "tests.test_k8s_autoscaling", address, json.dumps(tree), str(out)],
                   cwd=ROOT, env={**os.environ, **RAY_ENV}, check=True, timeout=300)
    return json.loads(out.read_text())


def test_autoscaler_adds_a_rollout_pod_for_a_new_replica_and_removes_it_after_the_drain(scaling):
    print("driver phase seconds:", {k: round(v, 1) for k, v in scaling["seconds"].items()})
    start, up, down = scaling["start"], scaling["up"], scaling["down"]
    assert len(start["nodes"]["rollout"]) == len(start["replicas"]) == 1
    # The second replica fits no existing pod: the autoscaler launched a second rollout pod and nothing else.
    assert len(up["nodes"]["rollout"]) == 2 and set(start["nodes"]["rollout"]) < set(up["nodes"]["rollout"])
    assert {g: n for g, n in up["nodes"].items() if g != "rollout"} == {
        g: n for g, n in start["nodes"].items() if g != "rollout"}
    assert set(up["nodes"]["rollout"]) == {node for _, node in up["replicas"]}  # one replica per rollout pod
    assert scaling["new_replica_version"] == scaling["learner_version_before_up"] == 1  # loaded before serving
    assert len(scaling["served_after_up"]) == 2 and all(n > 0 for n in scaling["served_after_up"].values())
    # Scaled back to one: a replica was drained and killed, then the autoscaler removed the pod it left idle.
    assert len(down["replicas"]) == 1 and down["replicas"][0] in up["replicas"]
    assert down["nodes"]["rollout"] == [down["replicas"][0][1]]


def test_learner_ranks_keep_their_processes_node_and_process_group(scaling):
    start, up, down = scaling["start"], scaling["up"], scaling["down"]
    assert start["learner"] == up["learner"] == down["learner"]  # (pid, node, restarts) per rank
    assert all(restarts == 0 for _, _, restarts in start["learner"])
    assert start["nodes"]["learner"] == up["nodes"]["learner"] == down["nodes"]["learner"]
    assert {node for _, node, _ in start["learner"]} == set(start["nodes"]["learner"])
    # Train steps are collectives over the gloo group (FSDP2 gathers, gradient reduce-scatter, metric
    # all-reduce), as is the weight export after each: they ran before, between and after the scaling.
    assert scaling["versions"] == [2, 3]
    assert scaling["rollout_versions"] == [[2, 2], [3]]


def test_no_work_lands_on_the_cpu_only_head(scaling):
    (head,) = scaling["start"]["nodes"]["head"]
    placed = {node for phase in ("start", "up", "down") for _, node in scaling[phase]["replicas"]}
    placed |= {node for phase in ("start", "up", "down") for _, node, _ in scaling[phase]["learner"]}
    assert head not in placed


# --- the driver (runs as `python -m tests.test_k8s_autoscaling ADDRESS CONFIG OUT`) -------------------------------

def wait_for(predicate, what: str, timeout_s: float = 120.0, poll_s: float = 0.5):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not within {timeout_s:.0f}s")
        time.sleep(poll_s)


def nodes_by_group() -> dict[str, list[str]]:
    """Alive node ids by worker group (the custom resource each advertises), plus the head."""
    import ray

    groups = {"head": [], "rollout": [], "learner": [], "reward": []}
    for node in ray.nodes():
        if node["Alive"]:
            kind = next((g for g in groups if f"{g}_node" in node["Resources"]), "head")
            groups[kind].append(node["NodeID"])
    return {kind: sorted(ids) for kind, ids in groups.items()}


def snapshot(learner, rollout) -> dict:
    """Where every learner rank and rollout replica runs, from the GCS actor table."""
    from ray._private.state import actors

    table = actors()
    ranks = [table[rank._actor_id.hex()] for rank in learner.ranks]
    return {"nodes": nodes_by_group(),
            "learner": [(info["Pid"], info["Address"]["NodeID"], info["NumRestarts"]) for info in ranks],
            "replicas": sorted((r.pid, table[r.handle._actor_id.hex()]["Address"]["NodeID"]) for r in rollout.replicas)}


def train_and_sync(ray, learner, rollout, step: int, prompts) -> tuple[int, list[int], dict[int, int]]:
    """One RL step without rewards: generate, train on alternating made-up rewards, push the weights."""
    from visiong1.algorithms.advantages import grpo_advantages

    served_before = dict(rollout.served)
    shards = rollout.generate(prompts, timeout_s=120)
    groups = [group for shard in ray.get(shards) for group in shard]
    rewards = [[float((i + s) % 2) for s in range(len(g.samples))] for i, g in enumerate(groups)]
    metrics = ray.get(learner.async_train_step(step, grpo_advantages(rewards), shards))[0]
    versions, _ = rollout.update_weights(learner.async_export_weights(), timeout_s=120)
    served = {pid: n - served_before.get(pid, 0) for pid, n in rollout.served.items() if pid in rollout_pids(rollout)}
    return metrics["train/version"], versions, served


def rollout_pids(rollout) -> set[int]:
    return {replica.pid for replica in rollout.replicas}


def drive(address: str, tree: dict, workdir: Path) -> dict:
    """Start the learner and rollout groups as the coordinator would, scale rollout 1 -> 2 -> 1, train between."""
    import ray

    from actors.learner import LearnerGroup
    from actors.rollout import RolloutGroup
    from visiong1.config import load_config_tree
    from visiong1.data.synthetic import generate_pool
    from visiong1.types import items_to_table

    config = load_config_tree(tree)
    seconds, started = {}, time.monotonic()
    ray.init(address=address, namespace="visiong1-k8s-test", log_to_driver=False)
    wait_for(lambda: all(nodes_by_group()[g] for g in ("rollout", "learner", "reward")), "the groups' min pods")
    seconds["min_pods_up"] = time.monotonic() - started
    learner = LearnerGroup(config.model.path, config.learner, config.rollout.temperature, timeout_s=120)
    rollout = RolloutGroup(config.model.path, config.rollout, config.round.system_prompt, config.round.seed,
                           cache_root=str(workdir / "engines"))
    prompts = items_to_table(generate_pool(["counting"], 8, seed=1))
    facts = {"start": snapshot(learner, rollout)}

    version, versions, _ = train_and_sync(ray, learner, rollout, 0, prompts)
    facts["learner_version_before_up"] = version
    mark = time.monotonic()
    rollout.scale(2)  # the new replica fits no existing pod: the autoscaler launches a rollout pod for it
    seconds["scale_up"] = time.monotonic() - mark
    facts["up"] = snapshot(learner, rollout)
    (new,) = [r for r in rollout.replicas if r.pid not in {pid for pid, _ in facts["start"]["replicas"]}]
    facts["new_replica_version"] = ray.get(new.handle.probe.remote())["version"]
    version_up, versions_up, facts["served_after_up"] = train_and_sync(ray, learner, rollout, 1, prompts)

    mark = time.monotonic()
    rollout.scale(1)  # drains and kills a replica: its pod idles and the autoscaler removes it
    wait_for(lambda: len(nodes_by_group()["rollout"]) == 1, "removal of the idle rollout pod", timeout_s=90)
    seconds["scale_down_and_pod_removed"] = time.monotonic() - mark
    facts["down"] = snapshot(learner, rollout)
    version_down, versions_down, _ = train_and_sync(ray, learner, rollout, 2, prompts)
    facts["versions"] = [version_up, version_down]
    facts["rollout_versions"] = [versions_up, versions_down]
    facts["served_after_up"] = {str(pid): n for pid, n in facts["served_after_up"].items()}
    facts["seconds"] = {**seconds, "total": time.monotonic() - started}
    rollout.shutdown()
    learner.shutdown()
    ray.shutdown()
    return facts


if __name__ == "__main__":
    address, tree, out = sys.argv[1], json.loads(sys.argv[2]), Path(sys.argv[3])
    out.write_text(json.dumps(drive(address, tree, out.parent)))
