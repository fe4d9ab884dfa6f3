"""The reward pool as real Ray actors: routing by type and domain, timeout policy per domain, metrics, scaling."""

import time

import httpx
import pytest

from actors.reward import RewardPool
from visiong1.config import load_config
from visiong1.types import PromptItem, RolloutSample, SampleGroup

pytestmark = pytest.mark.slow

HANGS = r"\boxed{\int_0^1 x^{x^{x^{x}}} dx}"


def group(domain: str, answer_type: str, answer: str, texts: list[str], meta: dict | None = None) -> SampleGroup:
    item = PromptItem(id=f"{domain}-1", source="test", domain=domain, question="q", images=[], answer=answer,
                      answer_type=answer_type, metadata=meta or {})
    samples = [RolloutSample(item.id, [1], [2], [-0.1], text, weight_version=3, finish_reason="stop") for text in texts]
    return SampleGroup(prompt=item, samples=samples)


@pytest.fixture(scope="module")
def pool(ray_cluster):
    config = load_config(None, ["reward.sample_deadline_s=1.0", "reward.num_cpus=0.1",
                                "reward.domains={medical: {on_timeout: exclude}, gui: {iou_threshold: 0.3}}"]).reward
    pool = RewardPool(config)
    yield pool
    for actor in pool.actors():
        ray_cluster.kill(actor)


def test_groups_are_scored_by_type_and_domain_rules(ray_cluster, pool):
    groups = [
        group("counting", "count", "3", [r"\boxed{3}", r"\boxed{three}", r"\boxed{4}", "no box"]),
        group("gui", "bbox", "[0, 0, 10, 10]", [r"\boxed{[5, 0, 15, 10]}"]),       # IoU 1/3 >= 0.3 in gui
        group("charts", "bbox", "[0, 0, 10, 10]", [r"\boxed{[5, 0, 15, 10]}"]),    # < 0.5 elsewhere
        group("math", "math", r"\frac{1}{2}", [r"\boxed{0.5}", HANGS]),
        group("medical", "math", "1", [r"\boxed{1}", HANGS, r"\boxed{2}"]),
    ]
    scores = ray_cluster.get(pool.async_score([ray_cluster.put(groups)]), timeout=60)[0]
    counting, gui, charts, math_, medical = scores
    assert counting.reasons == ["correct", "correct", "wrong", "no_answer"] and counting.weight_version == 3
    assert gui.accuracies == [1.0] and charts.accuracies == [0.0]
    assert gui.rewards == pytest.approx([1 / 3]) == charts.rewards
    assert math_.reasons == ["correct", "timeout"] and math_.excluded == [False, False]  # default: scored 0
    assert medical.reasons == ["correct", "timeout", "wrong"] and medical.excluded == [False, True, False]


def series(text: str, name: str, **labels: str) -> list[str]:
    """The exposition's lines of `name` carrying every `labels` pair (Ray adds its own labels beside them)."""
    return [line for line in text.splitlines() if line.startswith(name + "{")
            and all(f'{key}="{value}"' in line for key, value in labels.items())]


def test_metrics_are_labelled_by_domain_type_and_reason_on_rays_agent(ray_cluster, pool):
    """The actors export through Ray's metrics agent (one port per node, whatever the pool's size)."""
    ray_cluster.get(pool.async_score([ray_cluster.put([group("counting", "count", "3", [r"\boxed{3}"])])]))
    agent = f"http://127.0.0.1:{ray_cluster.nodes()[0]['MetricsExportPort']}/metrics"
    deadline, text = time.monotonic() + 60, ""
    excluded = {"domain": "medical", "reason": "timeout", "excluded": "true"}
    while time.monotonic() < deadline and not series(text, "ray_visiong1_reward_samples_total", **excluded):
        time.sleep(2)  # the agent exports on its report interval
        text = httpx.get(agent).text
    assert series(text, "ray_visiong1_reward_samples_total", answer_type="count", domain="counting", reason="correct",
                  excluded="false")
    assert [line.split()[-1] for line in series(text, "ray_visiong1_reward_samples_total", **excluded)] == ["1.0"]
    assert series(text, "ray_visiong1_reward_latency_seconds_bucket", answer_type="math")


def test_pool_grows_while_scoring_is_in_flight(ray_cluster, pool):
    """Growing adds workers beside calls in flight (they finish on the old worker)."""
    requests = [{"response": rf"\boxed{{{i}}}", "ground_truth": str(i % 3), "answer_type": "count"} for i in range(10)]
    expected = ["correct" if i % 3 == i else "wrong" for i in range(10)]
    assert pool.scale(1) == 1
    in_flight = pool.async_score_texts(requests)
    assert pool.scale(2) == 2
    spread = pool.async_score_texts(requests)
    assert len(in_flight) == 1 and len(spread) == 2
    for refs in (in_flight, spread):
        results = [r for part in ray_cluster.get(refs, timeout=60) for r in part]
        assert [r["reason"] for r in results] == expected
    sandbox_pids = [pid for pids in ray_cluster.get([w.sandbox_pids.remote() for w in pool.workers]) for pid in pids]
    assert len(set(sandbox_pids)) == 2 * pool.config.sandbox_workers  # each actor has its own sandbox processes
    assert pool.scale(1) == 1
    with pytest.raises(ValueError):
        pool.scale(0)


def test_pool_shrinks_while_scoring_goes_on_and_the_removed_worker_finishes_its_calls(ray_cluster, pool):
    """A call that runs into the sandbox deadline (1 s) is in flight on the worker being removed; `scale` returns
    only once that call has finished, and its results arrive whole (the worker was not killed under it)."""
    pool.scale(2)
    slow = [{"response": HANGS, "ground_truth": "1", "answer_type": "math"},
            {"response": r"\boxed{1}", "ground_truth": "1", "answer_type": "math"}] * 2
    refs = pool.async_score_texts(slow)  # one call per worker: the second goes to the worker removed below
    assert ray_cluster.wait([refs[1]], timeout=0)[1] == [refs[1]]  # still scoring as the pool shrinks
    assert pool.scale(1) == 1
    assert ray_cluster.wait([refs[1]], timeout=0)[0] == [refs[1]]  # drained before it was killed
    results = [r for part in ray_cluster.get(refs, timeout=60) for r in part]
    assert [r["reason"] for r in results] == ["timeout", "correct"] * 2


def test_training_groups_get_overlong_filtering_and_punishment_and_others_do_not(ray_cluster, pool):
    """DAPO's overlong handling in the pool: max_new_tokens 10 with a 5-token punished stretch; one response cut at
    the limit (excluded with `filter`, -1 with `punish`), one 7 tokens long (-0.4), one short."""
    item = group("counting", "count", "3", [])
    lengths, finishes = (10, 7, 2), ("length", "stop", "stop")
    item.samples = [RolloutSample(item.prompt.id, [1], [2] * n, [-0.1] * n, r"\boxed{3}", 3, finish)
                    for n, finish in zip(lengths, finishes)]
    rollout = load_config(None, ["rollout.max_new_tokens=10", "rollout.overlong.filter=true",
                                 "rollout.overlong.punish=true", "rollout.overlong.cache_tokens=5"]).rollout
    training, evaluation = (ray_cluster.get(pool.async_score([ray_cluster.put([item])], config), timeout=60)[0][0]
                            for config in (rollout, None))
    assert training.excluded == [True, False, False]
    assert training.rewards == pytest.approx([0.0, 0.6, 1.0]) and training.accuracies == [1.0, 1.0, 1.0]
    assert evaluation.excluded == [False, False, False] and evaluation.rewards == [1.0, 1.0, 1.0]
