"""The learner: one GRPO step improves the policy, FSDP2 ranks shard and match a single rank, checkpoints resume
exactly after a SIGKILL and refuse corruption, exports load like a Hugging Face model."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from actors.common import get_within
from actors.learner import LearnerGroup
from visiong1.algorithms.advantages import grpo_advantages
from visiong1.config import LearnerConfig
from visiong1.data.synthetic import generate_pool
from visiong1.engines.hf import HFEngine, SamplingParams
from visiong1.training.batching import ImageInputs, Sequence, collate, stretch_to, token_logprobs
from visiong1.faults import fault_env
from visiong1.training.checkpoint import CheckpointCorruptError, CheckpointFormatError, CheckpointStore
from visiong1.training.export import export_checkpoint
from visiong1.training.trainer import PolicyTrainer
from visiong1.types import TrainBatch

SYSTEM = "Answer the question. Put the final answer in \\boxed{}."


@pytest.fixture(scope="module")
def batches(tiny_model) -> list[TrainBatch]:
    """Six fixed step batches: 3 prompts x 4 samples, rewards alternating so every group has a spread."""
    engine = HFEngine(tiny_model, SYSTEM, seed=3)
    items = generate_pool(["counting"], 18, seed=7)
    result = []
    for step in range(6):
        groups = engine.generate(items[3 * step:3 * step + 3], SamplingParams(n=4, max_new_tokens=6))
        rewards = [[float((sample + group) % 2) for sample in range(4)] for group in range(3)]
        result.append(TrainBatch(groups, grpo_advantages(rewards), step))
    return result


def config(**changes) -> LearnerConfig:
    return LearnerConfig(**({"lr": 1e-3, "num_cpus": 1, "micro_batch_tokens": 256} | changes))


def sequence_logprob(trainer: PolicyTrainer, batch: TrainBatch, sign: int) -> float:
    sequences = [s for s in trainer.sequences(batch) if s.advantage * sign > 0]
    tensors = collate(sequences, trainer.pad_id)
    with torch.no_grad():
        logprobs = token_logprobs(trainer.model, tensors)
    return float((logprobs * tensors["response_mask"]).sum() / len(sequences))


def test_one_grpo_step_favours_positive_advantages(tiny_model, batches):
    trainer = PolicyTrainer(tiny_model, config())
    before = sequence_logprob(trainer, batches[0], +1), sequence_logprob(trainer, batches[0], -1)
    metrics = trainer.train_step(batches[0])
    after = sequence_logprob(trainer, batches[0], +1), sequence_logprob(trainer, batches[0], -1)
    assert after[0] > before[0] and after[1] < before[1]
    assert metrics["train/version"] == 1 and metrics["train/tokens_per_s"] > 0
    assert {"train/clip_fraction_low", "train/clip_fraction_high", "train/entropy", "train/peak_memory_mb"} <= set(metrics)


def test_gradient_checkpointing_and_recomputed_old_logprobs(tiny_model, batches):
    plain = PolicyTrainer(tiny_model, config()).train_step(batches[0])
    checkpointed = PolicyTrainer(tiny_model, config(gradient_checkpointing=True)).train_step(batches[0])
    assert checkpointed["train/loss"] == pytest.approx(plain["train/loss"], abs=1e-6)
    recomputed = PolicyTrainer(tiny_model, config(old_logprobs="recompute")).train_step(batches[0])
    assert recomputed["train/ratio_mean"] == pytest.approx(1.0, abs=1e-6)  # on-policy: ratio exactly 1
    capped = PolicyTrainer(tiny_model, config(old_logprobs="recompute", importance_cap=1.0)).train_step(batches[0])
    assert 0 < capped["train/importance_weight_mean"] <= 1.0 and "train/importance_weight_mean" not in recomputed


def test_later_mini_batches_see_the_ratio_move_and_the_clips_bind(tiny_model, batches):
    """Three optimizer steps in one RL step (one group each) at a high learning rate: the first trains on-policy
    (ratio exactly 1), the later ones against the behaviour logprobs of the policy as the step began."""
    trainer = PolicyTrainer(tiny_model, config(lr=5e-2, mini_batches=3, old_logprobs="recompute"))
    metrics = trainer.train_step(batches[0])
    assert metrics["train/mini_batches"] == 3 and metrics["train/version"] == 1
    assert metrics["train/mini_batch_0/ratio_mean"] == pytest.approx(1.0, abs=1e-6)
    assert metrics["train/mini_batch_0/clip_fraction_high"] == metrics["train/mini_batch_0/clip_fraction_low"] == 0
    for index in (1, 2):
        assert abs(metrics[f"train/mini_batch_{index}/ratio_mean"] - 1.0) > 1e-3
    assert sum(metrics[f"train/mini_batch_{index}/clip_fraction_{side}"] for index in (1, 2)
               for side in ("high", "low")) > 0
    assert trainer.scheduler.last_epoch == 3  # one scheduler step per optimizer step


def save(trainer: PolicyTrainer, store: CheckpointStore, step: int, extra: dict, metric: float | None = None) -> str:
    """One rank's checkpoint, written and committed as LearnerGroup.save_checkpoint does for a group."""
    staging = store.begin(step)
    digests = trainer.save_checkpoint(store, staging, extra)
    return store.commit(staging, step, digests, metric, world_size=1, backend=trainer.config.backend)


def test_reference_reset_moves_the_kl_anchor_to_the_current_policy_and_resumes(tiny_model, batches, tmp_path):
    trainer = PolicyTrainer(tiny_model, config(kl_coef=0.5, kl_reference="round"))
    for batch in batches[:3]:
        trainer.train_step(batch)
    assert trainer.train_step(batches[3])["train/kl_ref"] > 1e-4  # the policy has moved off its start
    trainer.reset_reference()
    policy = {name: tensor.clone() for name, tensor in trainer.model.state_dict().items()}
    assert all(torch.equal(tensor, policy[name]) for name, tensor in trainer.reference.state_dict().items())
    path = save(trainer, CheckpointStore(str(tmp_path)), 4, {"steps_done": 4})
    # On-policy step right after the reset: the KL to the reference starts from exactly zero.
    assert trainer.train_step(batches[4])["train/kl_ref"] == pytest.approx(0.0, abs=1e-7)

    resumed = PolicyTrainer(tiny_model, config(kl_coef=0.5, kl_reference="round"))
    # the reference comes back with the checkpoint, not from the starting weights
    resumed.load_checkpoint(CheckpointStore(str(tmp_path)), path)
    assert all(torch.equal(tensor, policy[name]) for name, tensor in resumed.reference.state_dict().items())
    with pytest.raises(ValueError, match="kl_coef"):
        PolicyTrainer(tiny_model, config()).reset_reference()


@pytest.mark.slow
def test_fsdp2_ranks_shard_and_match_one_rank(ray_cluster, tiny_model, batches):
    single = PolicyTrainer(tiny_model, config())
    expected = [single.train_step(batch)["train/loss"] for batch in batches[:5]]
    group = LearnerGroup(tiny_model, config(backend="fsdp2", ranks=2), temperature=1.0)
    try:
        counts = ray_cluster.get([rank.parameter_count.remote() for rank in group.ranks])
        for local, full in counts:
            assert abs(local - full / 2) <= 0.05 * full  # each rank stores about half
        losses = []
        for step, batch in enumerate(batches[:5]):
            metrics = ray_cluster.get(group.async_train_step(step, batch.advantages, [ray_cluster.put(batch.groups)]))
            assert metrics[0]["train/loss"] == metrics[1]["train/loss"]  # all ranks report the group's loss
            losses.append(metrics[0]["train/loss"])
        assert losses == pytest.approx(expected, abs=1e-5)
        update = ray_cluster.get(group.async_export_weights())
        weights = ray_cluster.get(update.tensors)
        trained = single.export_weights()
        assert update.version == 5 and update.names is not None and set(weights) == set(trained)
        worst = max((weights[name] - trained[name]).abs().max().item() for name in trained)
        assert worst < 1e-4, worst
    finally:
        group.shutdown()


def test_micro_batches_stretch_by_splitting_the_largest_then_adding_empty_ones():
    def seq(tokens: int) -> Sequence:
        return Sequence([0] * tokens, [1], [0.0], 1.0, ImageInputs(None, None))

    a, b, c, d = seq(3), seq(9), seq(4), seq(5)
    assert stretch_to([[a, b], [c]], 2) == [[a, b], [c]]
    assert stretch_to([[a, b], [c, d]], 3) == [[a], [b], [c, d]]  # the micro-batch of 14 tokens splits first
    assert stretch_to([[a], [b, c]], 4) == [[a], [b], [c], []]


def test_fsdp2_ranks_whose_micro_batches_differ_in_count_and_in_images_step_together(ray_cluster, tiny_model):
    """Every sequence is its own micro-batch; of three groups the first and last are text-only and the middle one
    has an image and an excluded sample, so rank 0 holds 6 sequences and rank 1 holds 5, and at pass 3 only rank 0's
    has an image. The ranks agree on the count and on which passes run the vision tower (idle sequences fill in)
    so their FSDP2 collectives pair up, and the step equals one rank's."""
    items = generate_pool(["counting"], 3, seed=8)
    items = [dataclasses.replace(item, images=[]) if index != 1 else item for index, item in enumerate(items)]
    groups = HFEngine(tiny_model, SYSTEM, seed=3).generate(items, SamplingParams(n=4, max_new_tokens=6))
    advantages = grpo_advantages([[float((sample + group) % 2) for sample in range(4)] for group in range(3)])
    advantages[1][3] = None
    batch = TrainBatch(groups, advantages, 0)
    expected = PolicyTrainer(tiny_model, config(micro_batch_tokens=16)).train_step(batch)
    group = LearnerGroup(tiny_model, config(backend="fsdp2", ranks=2, micro_batch_tokens=16), temperature=1.0)
    try:
        metrics = get_within(group.async_train_step(0, batch.advantages, [ray_cluster.put(batch.groups)]), 180,
                             "a step of ranks whose micro-batches differ")
        assert metrics[0]["train/sequences"] == 11 and metrics[0]["train/loss"] == metrics[1]["train/loss"]
        assert metrics[0]["train/loss"] == pytest.approx(expected["train/loss"], abs=1e-5)
    finally:
        group.shutdown()


def train(ray_cluster, group: LearnerGroup, batches: list[TrainBatch]) -> list[float]:
    return [ray_cluster.get(group.async_train_step(b.step, b.advantages, [ray_cluster.put(b.groups)]))[0]["train/loss"]
            for b in batches]


@pytest.mark.slow
def test_a_rank_killed_mid_step_after_a_save_resumes_equal_to_the_uninterrupted_run(ray_cluster, tiny_model, batches,
                                                                                     tmp_path):
    """The kill lands while step 4 is in flight on both ranks (after the checkpoint of step 3): the step is lost,
    the resumed group redoes it from the checkpoint and ends bit-equal to a run that was never killed."""
    settings = config(backend="fsdp2", ranks=2)
    straight = LearnerGroup(tiny_model, settings, temperature=1.0)
    expected_losses = train(ray_cluster, straight, batches)
    expected = ray_cluster.get(ray_cluster.get(straight.async_export_weights()).tensors)
    straight.shutdown()

    first = LearnerGroup(tiny_model, settings, temperature=1.0)
    losses = train(ray_cluster, first, batches[:3])
    location = str(tmp_path / "checkpoints")
    path = first.save_checkpoint(location, 3, {"steps_done": 3}, timeout_s=120)
    in_flight = first.async_train_step(batches[3].step, batches[3].advantages, [ray_cluster.put(batches[3].groups)])
    os.kill(first.pids[0], signal.SIGKILL)
    with pytest.raises(ray_cluster.exceptions.RayActorError):
        get_within(in_flight, 120, "the killed step")
    first.shutdown()

    resumed = LearnerGroup(tiny_model, settings, temperature=1.0)
    assert CheckpointStore(location).latest() == path
    assert resumed.restore(location, path, timeout_s=120) == {"steps_done": 3}
    losses += train(ray_cluster, resumed, batches[3:])
    weights = ray_cluster.get(ray_cluster.get(resumed.async_export_weights()).tensors)
    resumed.shutdown()
    assert losses == expected_losses  # exact: same ops, same order, same state
    assert all(torch.equal(weights[name], expected[name]) for name in expected)


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def checkpoint_tensors(path: str, scratch: Path) -> dict:
    """A checkpoint's whole state (model and optimizer), unsharded in this process, flattened to name -> value."""
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    dcp_to_torch_save(f"{path}/state", scratch)
    flat = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}/{key}", inner)
        elif isinstance(value, list):
            for index, inner in enumerate(value):
                walk(f"{prefix}/{index}", inner)
        else:
            flat[prefix] = value
    walk("", torch.load(scratch, weights_only=False))
    return flat


def assert_identical(left: dict, right: dict) -> None:
    assert set(left) == set(right)
    for name, value in left.items():
        same = torch.equal(value, right[name]) if isinstance(value, torch.Tensor) else value == right[name]
        assert same, name


@pytest.mark.slow
def test_resuming_at_another_world_size_reshards_weights_and_optimizer_exactly(ray_cluster, tiny_model, batches,
                                                                                 tmp_path):
    """2 -> 1 -> 2 ranks: each resumed group's own checkpoint equals the one it resumed from, tensor for tensor
    (model, AdamW moments and steps); a corrupt newest checkpoint is refused and the previous one loads."""
    location = str(tmp_path / "checkpoints")
    two = LearnerGroup(tiny_model, config(backend="fsdp2", ranks=2), temperature=1.0)
    train(ray_cluster, two, batches[:2])
    written = two.save_checkpoint(location, 2, {"steps_done": 2}, timeout_s=120)
    train(ray_cluster, two, batches[2:3])
    corrupt = two.save_checkpoint(location, 3, {"steps_done": 3}, timeout_s=120)
    two.shutdown()
    shard = Path(corrupt) / "state" / "__1_0.distcp"
    flip_a_byte(shard)

    refused = []
    one = LearnerGroup(tiny_model, config(backend="fsdp2", ranks=1), temperature=1.0)
    assert one.restore_newest(location, 120, lambda path, error: refused.append((path, str(error)))) == \
        (written, {"steps_done": 2})
    assert refused == [(corrupt, f"{shard}: sha256 does not match the manifest; refusing to load")]
    from_one = one.save_checkpoint(str(tmp_path / "one"), 2, {"steps_done": 2}, timeout_s=120)
    one.shutdown()
    two = LearnerGroup(tiny_model, config(backend="fsdp2", ranks=2), temperature=1.0)
    assert two.restore(str(tmp_path / "one"), from_one, timeout_s=120) == {"steps_done": 2}
    from_two = two.save_checkpoint(str(tmp_path / "two"), 2, {"steps_done": 2}, timeout_s=120)
    exported = two.save(str(tmp_path / "hf"), timeout_s=120)  # each rank writes its shards, rank 0 converts
    two.shutdown()
    original = checkpoint_tensors(written, tmp_path / "original.pt")
    assert any("exp_avg_sq" in name for name in original)
    assert_identical(checkpoint_tensors(from_one, tmp_path / "one.pt"), original)
    assert_identical(checkpoint_tensors(from_two, tmp_path / "two.pt"), original)
    from transformers import AutoModelForImageTextToText

    weights = AutoModelForImageTextToText.from_pretrained(exported).state_dict()
    assert all(torch.equal(weights[name.removeprefix("/model/")], value)
               for name, value in original.items() if name.startswith("/model/"))
    assert not Path(f"{exported}.shards").exists()


@pytest.fixture
def saved(tiny_model, batches, tmp_path):
    trainer = PolicyTrainer(tiny_model, config())
    trainer.train_step(batches[0])
    store = CheckpointStore(str(tmp_path / "store"), keep_last=2)
    return store, save(trainer, store, 1, {"steps_done": 1}), trainer


SAVE_STEP_2 = """
import sys
from visiong1.training.checkpoint import CheckpointStore
from visiong1.training.trainer import PolicyTrainer
from visiong1.config import LearnerConfig
trainer = PolicyTrainer(sys.argv[1], LearnerConfig(num_cpus=1))
store = CheckpointStore(sys.argv[2])
staging = store.begin(2)
store.commit(staging, 2, trainer.save_checkpoint(store, staging, {"steps_done": 2}), world_size=1, backend="torch")
"""


@pytest.mark.parametrize("point", ["writing_shards", "before_manifest", "before_rename", "before_retain"])
def test_a_kill_during_a_save_always_leaves_a_loadable_checkpoint(saved, tiny_model, point, tmp_path):
    """The saving process is SIGKILLed at `point` (a deterministic hook): the newest complete checkpoint loads, and
    what the crash left is removed at the next start."""
    store, path, trainer = saved
    (tmp_path / "markers").mkdir()
    process = subprocess.run([sys.executable, "-c", SAVE_STEP_2, tiny_model, store.root],
                             env={**os.environ, **fault_env(tmp_path / "markers", point)}, capture_output=True,
                             text=True)
    assert process.returncode == -signal.SIGKILL, process.stderr
    committed = point == "before_retain"  # the rename is the commit
    assert [step for step, _ in store.complete()] == ([1, 2] if committed else [1])
    assert len(store.remove_stale()) == (0 if committed else 1)
    assert sorted(p.name for p in Path(store.root).iterdir()) == (["step-00000001", "step-00000002"] if committed
                                                                  else ["step-00000001"])
    newest = store.latest()
    store.verify(newest, list(store.manifest(newest)["sha256"]))
    assert trainer.load_checkpoint(store, newest) == {"steps_done": 2 if committed else 1}


def test_a_flipped_byte_is_refused_with_the_file_named(saved):
    store, path, _ = saved
    flip_a_byte(Path(path) / "state" / "__0_0.distcp")
    with pytest.raises(CheckpointCorruptError, match=r"state/__0_0\.distcp: sha256 does not match"):
        store.verify(path, sorted(store.manifest(path)["sha256"]))


def test_a_checkpoint_of_the_single_writer_format_is_refused_naming_its_version(saved):
    store, path, trainer = saved
    manifest = Path(path) / "manifest.json"
    old = json.loads(manifest.read_text())
    del old["format"]  # format-1 manifests had no version field
    manifest.write_text(json.dumps(old))
    with pytest.raises(CheckpointFormatError, match="format-1 checkpoint"):
        trainer.load_checkpoint(store, path)


def test_retention_keeps_the_newest_and_the_best(saved):
    store, _, trainer = saved
    for step, metric in [(2, 0.9), (3, 0.1), (4, 0.2), (5, 0.3)]:
        save(trainer, store, step, {}, metric=metric)
    assert [step for step, _ in store.complete()] == [2, 4, 5]


def test_export_writes_sharded_safetensors_with_an_index(saved, tmp_path):
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    store, path, trainer = saved
    out = export_checkpoint(path, tmp_path / "export", max_shard_bytes=1 << 20)
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(out)
    AutoProcessor.from_pretrained(out)
    expected = trainer.full_state_dict()
    assert all(torch.equal(model.state_dict()[name], expected[name]) for name in expected)
    engine = HFEngine(str(out), SYSTEM)
    assert len(engine.generate(generate_pool(["counting"], 1), SamplingParams(n=1, max_new_tokens=3))) == 1
    command = [str(Path(sys.executable).parent / "visiong1"), "export", store.root, str(tmp_path / "cli-export")]
    assert subprocess.run(command, capture_output=True, text=True).returncode == 0
    assert (tmp_path / "cli-export" / "model.safetensors").exists()


@pytest.mark.slow
def test_deepspeed_zero3_ranks_shard_match_one_rank_and_resume(ray_cluster, tiny_model, batches, tmp_path):
    single = PolicyTrainer(tiny_model, config())
    expected = [single.train_step(batch)["train/loss"] for batch in batches[:5]]
    settings = config(backend="deepspeed", zero_stage=3, ranks=2)
    group = LearnerGroup(tiny_model, settings, temperature=1.0)
    try:
        for local, full in ray_cluster.get([rank.parameter_count.remote() for rank in group.ranks]):
            assert abs(local - full / 2) <= 0.05 * full
        assert train(ray_cluster, group, batches[:5]) == pytest.approx(expected, abs=1e-5)
        location = str(tmp_path / "ds")
        path = group.save_checkpoint(location, 5, {"steps_done": 5}, timeout_s=120)
        expected_next = train(ray_cluster, group, batches[5:])
        exported = Path(group.save(str(tmp_path / "hf"), timeout_s=120))  # DeepSpeed gathers on rank 0
        assert (exported / "config.json").exists() and (exported / "model.safetensors").exists()
    finally:
        group.shutdown()
    resumed = LearnerGroup(tiny_model, settings, temperature=1.0)
    try:
        assert resumed.restore(location, path, timeout_s=120) == {"steps_done": 5}
        assert train(ray_cluster, resumed, batches[5:]) == expected_next
    finally:
        resumed.shutdown()
    smaller = LearnerGroup(tiny_model, config(backend="deepspeed", zero_stage=3, ranks=1), temperature=1.0)
    try:
        with pytest.raises(CheckpointFormatError, match="DeepSpeed ZeRO-3 partitions of 2 ranks"):
            smaller.restore(location, path, timeout_s=120)
    finally:
        smaller.shutdown()
