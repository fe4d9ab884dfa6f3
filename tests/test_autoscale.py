"""Rollout autoscaling: the policy on a clock the test moves, then a real rollout group and a real run."""

import time

import pytest

from actors.autoscale import ReplicaPolicy
from actors.launch import start_run
from actors.rollout import RolloutGroup
from visiong1.config import AutoscaleConfig, RolloutConfig, load_config
from visiong1.data.synthetic import generate_pool
from visiong1.store import RunStore
from visiong1.types import items_to_table


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_policy_grows_at_once_with_the_load_and_shrinks_one_replica_per_cooldown():
    clock = Clock()
    policy = ReplicaPolicy(AutoscaleConfig(min_replicas=1, max_replicas=4, target=8, cooldown_s=30), clock)
    assert policy.decide(1, 8) is None  # 8 prompts at 8 per replica: one replica is right
    grown = policy.decide(1, 20)
    assert (grown.replicas, grown.previous) == (3, 1) and "20 prompts" in grown.reason
    assert policy.decide(3, 1000).replicas == 4  # never above max_replicas
    assert policy.decide(4, 4) is None  # the load fell: the cooldown starts
    clock.now = 29.0
    assert policy.decide(4, 4) is None
    clock.now = 30.0
    assert policy.decide(4, 4).replicas == 3  # one replica at a time
    assert policy.decide(3, 4) is None  # and the next removal waits a whole cooldown again
    clock.now = 45.0
    assert policy.decide(3, 20) is None  # 20 prompts want 3: the low spell ends
    clock.now = 80.0
    assert policy.decide(3, 4) is None
    clock.now = 110.0
    assert policy.decide(3, 4).replicas == 2
    assert ReplicaPolicy(AutoscaleConfig(min_replicas=2, max_replicas=4, target=8), clock).decide(1, 1).replicas == 2


def test_autoscale_bounds_are_checked_in_the_config():
    with pytest.raises(ValueError, match="min_replicas .3. exceeds max_replicas .2."):
        AutoscaleConfig(min_replicas=3, max_replicas=2)
    with pytest.raises(ValueError, match=r"rollout.replicas \(3\) is outside autoscale's bounds \[1, 2\]"):
        RolloutConfig(replicas=3, autoscale={"max_replicas": 2})


def serve_until(group: RolloutGroup, prompts, replicas: int, timeout_s: float = 120.0) -> int:
    """Generation calls until `replicas` serve (background starts join during calls); returns the calls made."""
    deadline, calls = time.monotonic() + timeout_s, 0
    while group.size() < replicas:
        assert time.monotonic() < deadline, f"{group.size()} of {replicas} replicas serve after {timeout_s}s"
        group.generate(prompts, timeout_s=120)
        calls += 1
    return calls


@pytest.mark.slow
def test_the_rollout_group_scales_before_a_call_and_a_rest_count_overrides_the_policy(ray_cluster, tiny_model):
    events = []
    config = RolloutConfig(engine="hf", samples_per_prompt=2, max_new_tokens=4, num_cpus=0.5, prompts_per_request=2,
                           autoscale={"min_replicas": 1, "max_replicas": 2, "target": 4, "cooldown_s": 0})
    group = RolloutGroup(tiny_model, config, "Answer.", seed=0, emit=lambda kind, **payload: events.append(payload))
    prompts = items_to_table(generate_pool(["counting"], 8, seed=1))
    try:
        group.generate(prompts, timeout_s=120)
        assert group.last_units == 2  # cut for the 2 replicas asked for
        assert (events[0]["serving"], events[0]["prompts"]) == (1, 8)  # the call did not wait for the start
        serve_until(group, prompts, 2)
        group.served.clear()
        group.generate(prompts, timeout_s=120)
        assert len(group.served) == 2  # both replicas answered a unit of that call
        group.generate(prompts.slice(0, 2), timeout_s=120)
        assert group.size() == 1  # shrinking is immediate
        group.reconcile(2)  # a count set over REST
        serve_until(group, prompts.slice(0, 2), 2)  # the policy waits while the REST count holds
        group.reconcile(None)  # cleared
        group.generate(prompts.slice(0, 2), timeout_s=120)
        assert group.size() == 1
    finally:
        group.shutdown()
    assert [(e["source"], e["previous"], e["replicas"]) for e in events] == [
        ("autoscale", 1, 2), ("autoscale", 2, 1), ("api", 1, 2), ("autoscale", 2, 1)]


@pytest.mark.slow
def test_a_replica_that_does_not_fit_stays_pending_while_calls_complete(ray_cluster, tiny_model):
    """3 logical CPUs per replica on the 8-CPU test cluster: a third replica cannot be placed, as on a full
    cluster. Calls complete on the replicas serving; a shrink cancels the pending start first."""
    config = RolloutConfig(engine="hf", samples_per_prompt=2, max_new_tokens=4, num_cpus=3, prompts_per_request=2,
                           autoscale={"min_replicas": 1, "max_replicas": 3, "target": 2, "cooldown_s": 0})
    group = RolloutGroup(tiny_model, config, "Answer.", seed=0)
    prompts = items_to_table(generate_pool(["counting"], 6, seed=1))
    try:
        group.generate(prompts, timeout_s=120)
        assert group.last_units == 3
        serve_until(group, prompts, 2)
        assert (group.size(), group.asked(), group.metrics()["rollout/pending_replicas"]) == (2, 3, 1)
        group.generate(prompts.slice(0, 2), timeout_s=120)  # wants 1: one replica fewer, the pending one
        assert (group.size(), group.asked()) == (2, 2)
    finally:
        group.shutdown()


@pytest.mark.slow
def test_a_run_scales_rollout_during_selection_evaluation_and_training_and_loses_no_step(ray_cluster, model_cache,
                                                                                          tmp_path):
    """Evaluation (8 prompts per call) and difficulty scoring (16) send more prompts per call than a training step
    (4): the group grows for them (to 2 and 3 replicas at 4 prompts each) and shrinks back one replica per call
    for the steps (cooldown 0); every step commits once."""
    config = load_config(None, [f"model.cache_dir={model_cache}", "model.warm_start_steps=60",
                                f"output_dir={tmp_path}", "data.num_items=32", "round.rounds=1", "round.steps=2",
                                "round.prompts_per_step=4", "rollout.samples_per_prompt=2", "rollout.engine=hf",
                                "rollout.max_new_tokens=8", "rollout.num_cpus=0.5", "reward.num_cpus=0.1",
                                "rollout.prompts_per_request=2", "eval.items_per_domain=8", "eval.pass_k=1",
                                "eval.blank_image_control=false", "selection.offline_difficulty=true",
                                "selection.difficulty_samples=6", "selection.difficulty_chunk=16",
                                "selection.pass_rate_low=0.0", "selection.pass_rate_high=1.0",
                                "rollout.autoscale={min_replicas: 1, max_replicas: 3, target: 4, cooldown_s: 0}"])
    run_id, coordinator, done = start_run(config)
    summary = ray_cluster.get(done, timeout=600)
    phase, scaled = None, []
    for event in ray_cluster.get(coordinator.events.remote(0)):
        if event["type"] == "phase":
            phase = event["phase"]
        elif event["type"] == "rollout_scaled":
            scaled.append((phase, event["previous"], event["replicas"]))
    assert scaled == [("evaluate", 1, 2), ("select", 2, 3), ("train", 3, 2), ("train", 2, 1), ("evaluate", 1, 2)]
    assert summary["steps"] == 2
    with RunStore.open(config.output_dir) as store:
        assert [m.step for m in store.metrics_for(run_id)] == [0, 1]
