"""Every supported model family: built tiny, served, trained, and loaded strictly (never a partial load)."""

import dataclasses
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from actors.rollout import RolloutGroup
from actors.vllm_engine import vllm_importable
from visiong1.config import LearnerConfig, load_config
from visiong1.data.synthetic import generate_pool
from visiong1.engines.hf import HFEngine, SamplingParams
from visiong1.models.families import FAMILIES, UnsupportedModel, family_of, load_model
from visiong1.models.tiny import tiny_model_path
from visiong1.training.batching import Sequence, collate, image_inputs, token_logprobs
from visiong1.training.trainer import PolicyTrainer
from visiong1.types import TrainBatch, items_to_table

SYSTEM = "Answer the question. Put the final answer in \\boxed{}."


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family_model(request, model_cache) -> str:
    return str(tiny_model_path(model_cache, seed=0, family=request.param))


def one_and_two_image_items():
    singles = generate_pool(["counting"], 4, seed=11)
    pair = dataclasses.replace(singles[2], id="pair", images=singles[2].images + singles[3].images,
                               question="How many squares are in the two images together?")
    return [singles[0], singles[1], pair]


def learner_gap(reference: HFEngine, groups) -> float:
    """Largest |sampled logprob - the learner's fp32 recomputation| over the groups' response tokens."""
    sequences = [Sequence(s.prompt_token_ids, s.token_ids, s.logprobs, 1.0, image_inputs(reference.processor, g.prompt))
                 for g in groups for s in g.samples]
    batch = collate(sequences, reference.pad_id)
    with torch.no_grad():
        recomputed = token_logprobs(reference.model, batch)
    mask = batch["response_mask"].bool()
    return (recomputed[mask] - batch["old_logprobs"][mask]).abs().max().item()


def test_each_family_samples_and_the_learner_rescores_within_1e4(family_model):
    engine = HFEngine(family_model, SYSTEM, seed=0)
    assert type(engine.model).__name__ == family_of(family_model).architecture
    items = one_and_two_image_items()
    groups = engine.generate(items, SamplingParams(n=2, max_new_tokens=6))
    image_pad = engine.processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert [g.samples[0].prompt_token_ids.count(image_pad) for g in groups] == [4, 4, 8]  # 56 px: 4x4 patches / 2x2
    assert learner_gap(engine, groups) <= 1e-4


def test_each_family_trains_one_step_with_its_vision_tower_frozen(family_model):
    engine = HFEngine(family_model, SYSTEM, seed=0)
    trainer = PolicyTrainer(family_model, LearnerConfig(lr=1e-3, freeze_vision=True))
    group = engine.generate(one_and_two_image_items()[2:], SamplingParams(n=2, max_new_tokens=6))[0]
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    metrics = trainer.train_step(TrainBatch([group], [[1.0, -1.0]], step=0))
    assert metrics["train/version"] == 1
    moved = {name for name, p in trainer.model.named_parameters() if not torch.equal(p, before[name])}
    assert moved and not any(name.startswith("model.visual.") for name in moved)
    assert not any(name.startswith("model.visual.") for name in trainer.trainable_names)


def test_a_checkpoint_of_one_family_declared_as_another_fails_naming_the_type(model_cache, tmp_path):
    source = tiny_model_path(model_cache, seed=0, family="qwen2_vl")
    relabelled = tmp_path / "relabelled"
    shutil.copytree(source, relabelled)
    config = json.loads((relabelled / "config.json").read_text())
    config |= {"model_type": "qwen2_5_vl", "architectures": ["Qwen2_5_VLForConditionalGeneration"]}
    (relabelled / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedModel, match=r"model type 'qwen2_5_vl'.*supported: qwen2_vl, qwen2_5_vl, qwen3_vl"):
        load_model(relabelled)


def test_a_checkpoint_missing_a_tensor_fails_instead_of_loading_partly(model_cache, tmp_path):
    truncated = tmp_path / "truncated"
    shutil.copytree(tiny_model_path(model_cache, seed=0), truncated)
    weights = load_file(truncated / "model.safetensors")
    missing = next(name for name in weights if "layers.1." in name)
    save_file({name: t for name, t in weights.items() if name != missing}, truncated / "model.safetensors",
              metadata={"format": "pt"})
    with pytest.raises(UnsupportedModel, match="missing keys"):
        load_model(truncated)


def test_an_unknown_family_is_refused_at_load(model_cache, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(tiny_model_path(model_cache, seed=0), other)
    config = json.loads((other / "config.json").read_text()) | {"model_type": "llava"}
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedModel, match="'llava' is not a supported family"):
        HFEngine(str(other), SYSTEM)


@pytest.mark.slow
@pytest.mark.skipif(not vllm_importable(), reason="vLLM is not installed (pip install -e .[cpu-vllm])")
def test_vllm_serves_each_family_with_the_learners_logprobs(ray_cluster, family_model, tmp_path):
    config = load_config(None, ["rollout.engine=vllm", "rollout.samples_per_prompt=2", "rollout.max_new_tokens=6",
                                "rollout.num_cpus=0.5"]).rollout
    rollout = RolloutGroup(family_model, config, SYSTEM, seed=0, cache_root=str(tmp_path))
    try:
        refs = rollout.generate(items_to_table(one_and_two_image_items()), timeout_s=120)
        groups = [group for part in ray_cluster.get(refs) for group in part]
    finally:
        rollout.shutdown()
    assert [g.prompt.id for g in groups] == ["synthetic-counting-s11-0000000", "synthetic-counting-s11-0000001", "pair"]
    assert learner_gap(HFEngine(family_model, SYSTEM), groups) <= 1e-4
