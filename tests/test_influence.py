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
from visiong1.faults import fault_env
from visiong1.selection.influence import PRECONDITIONER_DAMPING, GradientFeaturizer, HashedSketch, normalise
from visiong1.selection.scoring import InfluenceStore, domain_targets, influence_scores

SYSTEM = "Answer the question. Put the final answer in \\boxed{}."


def rows_of(items: list, path) -> list:
    """The items written to a Parquet file, as the index rows that roles read them by."""
    write_items(items, path)
    return PoolIndex.open([path]).values()


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    rank = lambda x: np.argsort(np.argsort(x))  # noqa: E731 (no ties in continuous scores)
    return float(np.corrcoef(rank(a), rank(b))[0, 1])


def test_hashed_sketch_preserves_inner_products_on_average_and_is_the_same_everywhere():
    torch.manual_seed(0)
    x, y = torch.randn(20000), torch.randn(20000)
    y = 0.6 * x + 0.8 * y
    blocks = lambda v: list(v.split([12000, 8000]))  # noqa: E731 (two parameter blocks)
    estimates = [float(HashedSketch(512, seed).project(blocks(x)) @ HashedSketch(512, seed).project(blocks(y)))
                 for seed in range(20)]
    assert abs(np.mean(estimates) - float(x @ y)) < 0.05 * float(x @ y)
    assert torch.equal(HashedSketch(512, 3).project(blocks(x)), HashedSketch(512, 3).project(blocks(x)))
    assert not torch.equal(HashedSketch(512, 3).project(blocks(x)), HashedSketch(512, 4).project(blocks(x)))
    swapped = HashedSketch(512, 3).project([x[12000:], x[:12000]])  # blocks hash apart: order matters
    assert not torch.allclose(swapped, HashedSketch(512, 3).project([x[:12000], x[12000:]]))


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


@pytest.mark.parametrize("precondition", [False, True])
def test_streamed_features_equal_the_dense_hashed_sketch(featurizer, precondition):
    """Sketching each parameter's gradient in a backward hook equals sketching the whole exact gradient."""
    items = generate_pool(["counting", "spatial"], 6, seed=7)
    sizes = [param.numel() for param in featurizer.params]
    gradients = torch.stack([featurizer.gradient(item) for item in items])
    v = (gradients ** 2).mean(dim=0)
    featurizer.precondition_with(v.numpy() if precondition else None)
    scale = (v + PRECONDITIONER_DAMPING * v.mean()).rsqrt() if precondition else torch.ones_like(v)
    try:
        dense = normalise(torch.stack([featurizer.sketch.project(list((g * scale).split(sizes))) for g in gradients]))
        np.testing.assert_allclose(featurizer.features(items), dense.numpy(), atol=1e-5)
        np.testing.assert_allclose(featurizer.squared_gradient_sum(items), (gradients ** 2).sum(0).numpy(),
                                   rtol=1e-5, atol=1e-12)
    finally:
        featurizer.precondition_with(None)
    assert all(param.grad is None for param in featurizer.params)  # each block freed once sketched


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
        # Targets have no samples: their feature is the NLL of their answer, so scoring needs the candidates' only.
        targets = generate_pool(["counting"], 2, seed=5)
        samples = {item.id: {"responses": responses, "rewards": [1.0, 0.0]}}
        assert featurizer.scores([item], targets, samples).shape == (1,)
        featurizer.precondition_with(None)
        nll = featurizer.config.model_copy(update={"loss": "nll"})
        as_target = featurizer.features(targets, target=True)
        featurizer.config = nll
        np.testing.assert_allclose(as_target, featurizer.features(targets), atol=1e-6)
    finally:
        featurizer.config = featurizer.config.model_copy(update={"loss": "nll"})


@pytest.mark.slow
def test_influence_pool_scores_match_one_process_and_still_match_once_scaled_to_two_workers(
        ray_cluster, tiny_model, featurizer, tmp_path):
    candidates = generate_pool(["counting", "gui"], 10, seed=4)
    targets = generate_pool(["counting", "gui"], 6, seed=5)
    rows = rows_of(candidates, tmp_path / "c.parquet"), rows_of(targets, tmp_path / "t.parquet")
    results, events = {}, []
    pool = InfluencePool(tiny_model, InfluenceConfig(projection_dim=1024, num_cpus=0.5, score_chunk=4), SYSTEM,
                         temperature=1.0, emit=lambda kind, **payload: events.append(payload))
    try:
        results[1] = pool.score(*rows, timeout_s=300)
        pool.reconcile(2)  # a count set over REST, applied between passes
        results[2] = pool.score(*rows, timeout_s=300)
        pool.reconcile(None)  # cleared: back to selection.influence.workers
        assert len(pool.workers) == 1
    finally:
        pool.shutdown()
    np.testing.assert_allclose(results[1][0], featurizer.scores(candidates, targets), atol=1e-5)
    np.testing.assert_allclose(results[2][0], results[1][0], atol=1e-6)
    assert [(m["influence/scored"], m["influence/workers"]) for _, m in results.values()] == [(10, 1), (10, 2)]
    assert [(e["previous"], e["workers"], e["source"]) for e in events] == [(1, 2, "api"), (2, 1, "config")]


def killed_in_the_second_chunk(model_path: str, rows: tuple, store_dir: str) -> str:
    """Score in a Ray task whose actors inherit `influence_score@2`: the actor dies in the second chunk."""
    pool = InfluencePool(model_path, InfluenceConfig(projection_dim=1024, num_cpus=0.5, score_chunk=4), SYSTEM, 1.0)
    try:
        pool.score(*rows, timeout_s=300, store=InfluenceStore(store_dir))
    except Exception as error:  # noqa: BLE001 (the failure is what this task reports)
        return type(error).__name__
    finally:
        pool.shutdown()
    return "finished"


@pytest.mark.slow
def test_influence_scores_resume_after_a_killed_worker_without_recomputing_finished_chunks(
        ray_cluster, tiny_model, featurizer, tmp_path):
    candidates = generate_pool(["counting", "gui"], 10, seed=4)
    targets = generate_pool(["counting", "gui"], 6, seed=5)
    rows = rows_of(candidates, tmp_path / "c.parquet"), rows_of(targets, tmp_path / "t.parquet")
    store_dir, markers = tmp_path / "influence", tmp_path / "markers"
    markers.mkdir()
    task = ray_cluster.remote(killed_in_the_second_chunk).options(
        runtime_env={"env_vars": fault_env(markers, "influence_score@2")}, num_cpus=0)
    assert ray_cluster.get(task.remote(tiny_model, rows, str(store_dir)), timeout=300) == "ActorDiedError"
    first = {path.name: path.read_bytes() for path in InfluenceStore(store_dir).chunks()}
    assert len(first) == 1 and (markers / "influence_score@2").exists()
    pool = InfluencePool(tiny_model, InfluenceConfig(projection_dim=1024, num_cpus=0.5, score_chunk=4), SYSTEM, 1.0)
    try:
        scores, metrics = pool.score(*rows, timeout_s=300, store=InfluenceStore(store_dir))
    finally:
        pool.shutdown()
    assert (metrics["influence/resumed"], metrics["influence/scored"]) == (4, 6)
    assert all((store_dir / name).read_bytes() == data for name, data in first.items())
    np.testing.assert_allclose(scores, featurizer.scores(candidates, targets), atol=1e-5)


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
