"""`visiong1 plan`: the memory per role from the model's shape on the meta device, and refusing what does not fit."""

import json
import subprocess
import sys

import pytest

from visiong1.config import load_config
from visiong1.models.planner import GIB, PRESETS, learner_rank, model_shape, plan, run_shortfalls, shortfalls

PAPER = "configs/vision_g1_7b.yaml"


def run_plan(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "visiong1.cli", "plan", *args], capture_output=True, text=True,
                          timeout=300)


def test_plan_prints_every_role_of_the_paper_config():
    result = run_plan("-c", PAPER, "resources.gpu_memory_gib=80")
    assert result.returncode == 0, result.stderr
    for role in ("learner rank", "rollout replica", "influence worker", "learner rank 0 (host)"):
        assert role in result.stdout
    assert "8.29B parameters" in result.stdout  # Qwen2.5-VL-7B-Instruct's published shape


def test_plan_refuses_a_gpu_too_small_naming_the_role_and_the_shortfall():
    result = run_plan("-c", PAPER, "resources.gpu_memory_gib=20", "--json")
    assert result.returncode == 1
    problems = json.loads(result.stdout)["shortfalls"]
    assert any(p.startswith("learner rank: needs") and "short by" in p for p in problems)
    assert any(p.startswith("rollout replica (per GPU): needs") for p in problems)  # 15.5 GiB of bf16 weights in 0.7 x 20 GiB
    assert "does not fit: learner rank" in result.stderr


@pytest.mark.parametrize("preset, parameters", [("Qwen/Qwen2.5-VL-7B-Instruct", 8.29e9),
                                                ("Qwen/Qwen3-VL-8B-Instruct", 8.77e9)])
def test_presets_have_the_published_sizes(preset, parameters):
    shape = model_shape(load_config(PAPER, [f"model.path={preset}"]))
    assert shape.parameters == pytest.approx(parameters, rel=0.01)
    assert set(PRESETS) >= {preset}


def test_sharding_divides_model_state_by_the_ranks():
    one = dict(learner_rank(load_config(PAPER, ["learner.ranks=1"]), model_shape(load_config(PAPER))).parts)
    eight = dict(learner_rank(load_config(PAPER, ["learner.ranks=8"]), model_shape(load_config(PAPER))).parts)
    for part in ("parameters", "gradients", "optimizer"):
        assert eight[part] * 8 == pytest.approx(one[part], rel=1e-6)
    assert eight["logits"] == one["logits"]  # a micro-batch's activations are not sharded


def test_model_state_agrees_with_deepspeeds_zero3_estimate(tiny_model):
    """DeepSpeed's `estimate_zero3_model_states_mem_needs_all_live` (no offload) for the same model and ranks:
    18 bytes per parameter over the ranks plus 4 per parameter of the largest layer. The plan counts 16 (fp32
    parameter, gradient, two AdamW moments) plus two gathered bf16 units."""
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs, model_to_params
    from visiong1.models.families import load_model

    config = load_config(None, [f"model.path={tiny_model}", "learner.backend=fsdp2", "learner.ranks=4",
                                "learner.num_gpus=1", "learner.freeze_vision=false"])
    total, largest = model_to_params(load_model(tiny_model))
    deepspeed_gpu = estimate_zero3_model_states_mem_needs(total, largest, num_gpus_per_node=4,
                                                          cpu_offload=False)[1]
    parts = learner_rank(config, model_shape(config)).parts
    planned = sum(parts[name] for name in ("parameters", "gradients", "optimizer", "gathered units"))
    assert model_shape(config).parameters == total
    assert planned == pytest.approx(deepspeed_gpu, rel=0.15)


def test_cpu_roles_are_reported_not_checked():
    _, roles = plan(load_config(PAPER, ["resources.gpu_memory_gib=80"]))
    influence = next(role for role in roles if role.role == "influence worker")
    assert influence.device == "cpu" and influence.total > 30 * GIB  # an fp32 7B copy each
    assert shortfalls(roles, 80) == []


def test_an_influence_worker_on_a_gpu_holds_bf16_weights_and_is_checked_with_the_learner_it_shares():
    """On a GPU the influence worker holds bf16 weights (half its CPU figure) and one parameter's gradient at a
    time; sharing a learner's GPU, the two are checked together, since the idle learner's state stays resident."""
    shared = ["resources.gpu_memory_gib=80", "learner.num_gpus=0.5", "selection.influence.num_gpus=0.5"]
    _, cpu_roles = plan(load_config(PAPER, ["resources.gpu_memory_gib=80"]))
    _, roles = plan(load_config(PAPER, shared))
    by_name = {role.role: role for role in roles}
    cpu_influence = next(role for role in cpu_roles if role.role == "influence worker")
    influence, learner = by_name["influence worker"], by_name["learner rank"]
    assert influence.device == "gpu" and influence.parts["weights"] * 2 == cpu_influence.parts["weights"]
    assert influence.parts["gradient block"] < influence.parts["preconditioner"]  # never the whole subset's
    together = by_name["learner rank + influence worker (one GPU)"]
    assert together.total == learner.total + influence.total
    too_small = learner.total / GIB + 1  # the learner alone fits; with the influence worker beside it, not
    assert any(p.startswith("learner rank + influence worker") for p in shortfalls(roles, too_small))
    _, apart = plan(load_config(PAPER, ["resources.gpu_memory_gib=80", "selection.influence.num_gpus=1"]))
    assert not any("+ influence" in role.role for role in apart)  # a GPU of its own: checked alone


def test_rollout_is_planned_at_autoscales_upper_bound_and_checked_against_the_gpus_declared():
    autoscaled = ["resources.gpu_memory_gib=80", "rollout.num_gpus=1", "learner.num_gpus=1", "learner.ranks=4",
                  "rollout.autoscale={min_replicas: 1, max_replicas: 6}"]
    _, roles = plan(load_config(PAPER, autoscaled))
    assert next(role for role in roles if role.role.startswith("rollout")).count == 6
    config = load_config(PAPER, [*autoscaled, "resources.gpus=8"])
    (problem,) = [p for p in run_shortfalls(config, roles) if "resources.gpus" in p]
    assert "need 10 GPUs" in problem and "6 rollout replicas" in problem
    assert not any("resources.gpus" in p for p in run_shortfalls(load_config(PAPER, [*autoscaled,
                                                                                     "resources.gpus=10"]), roles))
