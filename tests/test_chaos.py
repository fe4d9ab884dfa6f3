"""The CI chaos soak: a 2-round run started over REST while crash points kill one process of every role, at named
points inside steps (generation, scoring, training, a weight load, a checkpoint save and its commit), after a
committed step of the second round, and during a resume.
The run must finish on its own; the store must show every step committed once, the ledger nothing lost, and the
final checkpoint must load. `python -m benchmarks.chaos` runs the longer soak."""

from __future__ import annotations

import pytest

from benchmarks.chaos import SMALL_RUN, soak
from tests.conftest import TEST_NAMESPACE
from visiong1.models.families import load_model

pytestmark = pytest.mark.slow

FAULTS = ["generate@3", "score@3", "committed_step_3", "resuming@1", "train@4", "weight_load@4", "writing_shards@3",
          "before_manifest@3"]


def test_a_run_over_rest_survives_a_kill_in_every_role(ray_cluster, model_cache, tmp_path):
    overrides = SMALL_RUN + ["round.rounds=2", "round.steps=3", "round.max_retries=6"]
    result = soak(tmp_path, model_cache, overrides, FAULTS, namespace=TEST_NAMESPACE, timeout_s=1200)
    assert result["ended"] == "run_finished", result
    assert result["faults"] == len(FAULTS)
    assert result["faults_per_role"] == {"coordinator": 3, "rollout replica": 2, "reward worker": 1,
                                         "learner rank": 2}
    assert result["rounds_done"] == 2 and result["steps"] == list(range(6))  # each step committed once
    assert 3 in result["superseded_steps"]  # round 1's first step, after round 0's checkpoint; then the kill
    assert result["samples_lost"] == 0 and all(ledger["in_flight"] == 0 for ledger in result["ledgers"])
    assert sum(ledger["trained"] + ledger["dropped"].get("excluded", 0) for ledger in result["ledgers"]) == 6 * 16
    # only learner ranks make the run retry (in training, in a save): Ray restarts a reward actor and re-runs its
    # call, a replica dying in generation or in a weight load is replaced in place (the latter announced)
    assert result["retries"] == 2 and result["replicas_replaced"] >= 1
    assert all(seconds is not None for seconds in result["recovery_s"].values())
    model = load_model(result["summary"]["checkpoint"])
    assert sum(parameter.numel() for parameter in model.parameters()) > 0
