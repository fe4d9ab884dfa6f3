"""Influence features on the tiny model (projection fidelity, loss variants) and the scoring pool and offline
difficulty scoring on real actors."""

import numpy as np
import pytest
import torch

from actors.influence import InfluencePool
from actors.reward import RewardPool
from actors.rollout import RolloutGroup
from actors.selection import score_difficulty
from visiong1.config import InfluenceConfig, load_config
from visiong1.data.pool_index import PoolIndex, write_items
from visiong1.data.synthetic import generate_pool
from visiong1.selection.difficulty import DifficultyStore
from visiong1.selection.influence import PRECONDITIONER_DAMPING, CountSketch, GradientFeaturizer, normalise
from visiong1.selection.scoring import domain_targets, influence_scores

SYSTEM = "Answer the question. Put the final answer in \\boxed{}."


def rows_of(items: list, path) -> list:
    """The items written to a Parquet file, as the index rows that roles read them by."""
    write_items(items, path)
    return PoolIndex.open([path]).values()


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    rank = lambda x: np.argsort(np.argsort(x))  # noqa: E731 (no ties in continuous scores)
    return float(np.corrcoef(rank(a), rank(b))[0, 1])


def test_count_sketch_preserves_inner_products_on_average():
    torch.manual_seed(0)
    x, y = torch.randn(1, 20000), torch.randn(1, 20000)
    y = 0.6 * x + 0.8 * y
    estimates = [float(CountSketch(20000, 512, seed).project(x) @ CountSketch(20000, 512, seed).project(y).T)
                 for seed in range(20)]
    assert abs(np.mean(estimates) - float(x @ y.T)) < 0.05 * float(x @ y.T)
    sketch = CountSketch(20000, 512, seed=3)
    assert torch.equal(sketch.project(x), CountSketch(20000, 512, seed=3).project(x))  # seeded: same in every actor


@pytest.fixture(scope="module")
def featurizer(tiny_model):
    config = InfluenceConfig(projection_dim=1024, last_layers=1, seed=0)
    return GradientFeaturizer(tiny_model, config, SYSTEM)


@pytest.mark.parametrize("precondition", [True, False])
@pytest.mark.parametrize("aggregate", ["max", "mean"])
def test_projected_scores_rank_like_exact_gradient_similarities(featurizer, precondition, aggregate):
    assert featurizer.size >= 10 * featurizer.config.projection_dim
    items = generate_pool(["counting", "spatial"], 60, seed=3, corrupt_fraction=0.3)
    targets = generate_pool(["counting", "spatial"], 16, seed=99)
    domains, target_domains = [i.domain for i in items], [t.domain for t in targets]
    gradients = torch.stack([featurizer.gradient(i) for i in items])
    target_gradients = torch.stack([featurizer.gradient(t) for t in targets])
    v = (target_gradients ** 2).mean(dim=0)
    scale = (v + PRECONDITIONER_DAMPING * v.mean()).rsqrt() if precondition else torch.ones_like(v)
    exact = influence_scores(normalise(gradients * scale).numpy(), domains,
                             domain_targets(normalise(target_gradients * scale).numpy(), target_domains), aggregate)
    default = featurizer.config
    featurizer.config = default.model_copy(update={"precondition": precondition, "aggregate": aggregate})
    try:
        projected = featurizer.scores(items, targets)
    finally:
        featurizer.config = default
    assert spearman(exact, projected) >= 0.9


def test_policy_gradient_loss_is_zero_for_uniform_rewards(featurizer):
    item = generate_pool(["counting"], 1)[0]
    encode = featurizer.processor.tokenizer.encode
    responses = [encode("\\boxed{3}", add_special_tokens=False), encode("\\boxed{5}", add_special_tokens=False)]
    uniform = featurizer.config.model_copy(update={"loss": "policy_gradient"})
    featurizer.config = uniform
    try:
        assert torch.count_nonzero(featurizer.gradient(item, {"responses": responses, "rewards": [1.0, 1.0]})) == 0
        assert torch.count_nonzero(featurizer.gradient(item, {"responses": responses, "rewards": [1.0, 0.0]})) > 0
        with pytest.raises(ValueError, match="difficulty samples"):
            featurizer.gradient(item)
    finally:
        featurizer.config = featurizer.config.model_copy(update={"loss": "nll"})


@pytest.mark.slow
def test_influence_pool_scores_match_one_process_and_shard_across_actors(ray_cluster, tiny_model, featurizer, tmp_path):
    config = InfluenceConfig(projection_dim=1024, workers=2, num_cpus=0.5)
    pool = InfluencePool(tiny_model, config, SYSTEM, temperature=1.0)
    try:
        candidates = generate_pool(["counting", "gui"], 10, seed=4)
        targets = generate_pool(["counting", "gui"], 6, seed=5)
        scores, metrics = pool.score(rows_of(candidates, tmp_path / "c.parquet"), rows_of(targets, tmp_path / "t.parquet"),
                                     timeout_s=300)
    finally:
        pool.shutdown()
    np.testing.assert_allclose(scores, featurizer.scores(candidates, targets), atol=1e-5)
    assert metrics["influence/scored"] == 10 and metrics["influence/workers"] == 2


@pytest.mark.slow
def test_interrupted_difficulty_scoring_resumes_after_the_last_whole_chunk(ray_cluster, tiny_model, tmp_path):
    config = load_config(None, ["rollout.engine=hf", "rollout.num_cpus=0.5", "rollout.max_new_tokens=6",
                                "selection.difficulty_samples=3", "selection.difficulty_chunk=2",
                                "reward.num_cpus=0.1"])
    rollout = RolloutGroup(tiny_model, config.rollout, SYSTEM, seed=0, cache_root=str(tmp_path / "c"))
    rewards = RewardPool(config.reward)
    try:
        items = rows_of(generate_pool(["counting"], 7, seed=2), tmp_path / "items.parquet")
        store = DifficultyStore(tmp_path / "difficulty")
        score_difficulty(items[:4], rollout, rewards, config, store, round_index=0)  # then "interrupted"
        first_chunks = {path.name: path.read_bytes() for path in store.chunks()}
        (tmp_path / "difficulty" / "chunk-000002.partial").write_bytes(b"torn write")
        rows = score_difficulty(items, rollout, rewards, config, store, round_index=0)
    finally:
        rollout.shutdown()
        rewards.shutdown()
    assert len(first_chunks) == 2 and len(store.chunks()) == 4  # 2 + ceil(3 / 2): only the missing items ran
    assert all(store.directory.joinpath(name).read_bytes() == data for name, data in first_chunks.items())
    assert sorted(row["id"] for row in rows) == sorted(item.id for item in items)
    assert all(len(row["accuracies"]) == 3 and len(row["responses"]) == 3 for row in rows)
