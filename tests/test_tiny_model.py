"""The tiny Qwen2.5-VL: built locally, generates from images, and the learner scores exactly what rollout sampled."""

import pytest
import torch
from transformers import AutoProcessor

from visiong1.data.synthetic import generate_pool
from visiong1.engines.hf import HFEngine, SamplingParams
from visiong1.models.tiny import tiny_model_path
from visiong1.rewards import score
from visiong1.training.batching import Sequence, collate, image_inputs, token_logprobs
from visiong1.training.warm_start import answer_sequences

SYSTEM = "Answer the question. Put the final answer in \\boxed{}."


def test_build_is_cached_and_seeded(model_cache, tiny_model):
    assert str(tiny_model_path(model_cache, seed=0)) == tiny_model
    assert tiny_model_path(model_cache, seed=1) != tiny_model_path(model_cache, seed=0)


def test_multimodal_generate_returns_versioned_samples_with_logprobs(tiny_model):
    engine = HFEngine(tiny_model, SYSTEM, seed=0)
    items = generate_pool(["counting"], 3)
    groups = engine.generate(items, SamplingParams(n=4, max_new_tokens=6))
    assert [g.prompt.id for g in groups] == [i.id for i in items]
    image_pad = engine.processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    for group in groups:
        assert len(group.samples) == 4
        for sample in group.samples:
            assert sample.prompt_token_ids.count(image_pad) == 4  # 56x56 image: 4x4 patches merged 2x2
            assert 1 <= len(sample.token_ids) == len(sample.logprobs) <= 6
            assert all(lp <= 0 for lp in sample.logprobs)
            assert image_pad not in sample.token_ids  # special tokens are banned in sampling
            assert sample.finish_reason in ("stop", "length")
            assert sample.weight_version == 0


def test_learner_logprobs_match_rollout_logprobs(tiny_model):
    """Same prompt ids and images through a training forward reproduce the sampler's logprobs."""
    engine = HFEngine(tiny_model, SYSTEM, seed=1)
    item = generate_pool(["counting"], 1)[0]
    group = engine.generate([item], SamplingParams(n=3, max_new_tokens=8))[0]
    images = image_inputs(engine.processor, item)
    sequences = [Sequence(s.prompt_token_ids, s.token_ids, s.logprobs, 1.0, images) for s in group.samples]
    batch = collate(sequences, engine.pad_id)
    with torch.no_grad():
        recomputed = token_logprobs(engine.model, batch)
    mask = batch["response_mask"].bool()
    assert torch.allclose(recomputed[mask], batch["old_logprobs"][mask], atol=1e-4)


def test_weight_update_changes_policy_and_version(tiny_model):
    engine = HFEngine(tiny_model, SYSTEM, seed=0)
    items = generate_pool(["counting"], 2)
    greedy = SamplingParams(greedy=True, max_new_tokens=6)
    before = [s.logprobs[0] for g in engine.generate(items, greedy) for s in g.samples]
    language_model = {name: p + torch.randn_like(p) for name, p in engine.model.named_parameters()
                      if "language_model" in name}
    engine.load_weights(language_model, version=7)
    after = engine.generate(items, greedy)
    assert [s.logprobs[0] for g in after for s in g.samples] != pytest.approx(before, abs=1e-3)
    assert {s.weight_version for g in after for s in g.samples} == {7}


def test_warm_start_targets_are_what_the_reward_accepts(tiny_model):
    """Supervised targets decode to the boxed reference answer, which the item's scorer marks correct (a `point`
    item's target is the box centre, not its ground-truth box)."""
    processor = AutoProcessor.from_pretrained(tiny_model)
    items = [item for item in generate_pool(["gui"], 12, seed=4) if item.answer_type == "point"][:3]
    assert items
    for item, sequence in zip(items, answer_sequences(processor, items, SYSTEM)):
        text = processor.tokenizer.decode(sequence.response_ids, skip_special_tokens=True)
        assert text == f"\\boxed{{{item.reference_answer()}}}" and text.startswith("\\boxed{(")
        assert score(text, item.answer, item.answer_type, **item.scorer_meta()).accuracy == 1.0
