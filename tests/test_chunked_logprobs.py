"""The chunked output head gives the plain head's logprobs, entropy and gradients at the response positions, with
no `[tokens x vocab]` tensor beyond one chunk."""

import pytest
import torch

from visiong1.data.synthetic import generate_pool
from visiong1.engines.hf import HFEngine, SamplingParams
from visiong1.models.families import load_model
from visiong1.training.batching import (Sequence, collate, first_response_position, image_inputs, modality_types,
                                        token_logprobs)
from visiong1.training.logprobs import head_logprobs, install_logprob_head


@pytest.fixture(scope="module")
def batch(tiny_model):
    engine = HFEngine(tiny_model, "Answer.", seed=3)
    groups = engine.generate(generate_pool(["counting"], 3), SamplingParams(n=2, max_new_tokens=6, temperature=0.8))
    sequences = [Sequence(s.prompt_token_ids, s.token_ids, s.logprobs, 1.0, image_inputs(engine.processor, g.prompt))
                 for g in groups for s in g.samples]
    return collate(sequences, engine.pad_id)


@pytest.mark.parametrize("chunk", [1, 7, 100_000])
def test_chunked_head_matches_the_plain_head_and_its_gradients(tiny_model, batch, chunk):
    plain, chunked = load_model(tiny_model), load_model(tiny_model)
    install_logprob_head(chunked, chunk)
    assert chunked.lm_head.weight is chunked.model.language_model.embed_tokens.weight  # the tie survives
    mask = batch["response_mask"]
    results = []
    for model, logprobs in ((plain, token_logprobs), (chunked, head_logprobs)):
        values, entropy = logprobs(model, batch, 0.8, with_entropy=True)
        ((values * mask).sum() + 0.3 * (entropy * mask).sum()).backward()
        results.append((values, entropy, {name: p.grad for name, p in model.named_parameters() if p.grad is not None}))
    (lp, ent, grads), (lp_c, ent_c, grads_c) = results
    assert torch.allclose(lp * mask, lp_c, atol=1e-5) and torch.allclose(ent * mask, ent_c, atol=1e-5)
    outside = mask == 0  # prompt and padding rows never reach the chunked head: exactly 0, no gradient
    assert outside.any() and not lp_c[outside].any() and not ent_c[outside].any()
    assert grads.keys() == grads_c.keys()
    assert max((grads[name] - grads_c[name]).abs().max().item() for name in grads) < 1e-4
    assert chunked.lm_head.targets is None  # the head is plain again for generation


def test_without_targets_the_head_is_the_plain_linear_head(tiny_model, batch):
    plain, chunked = load_model(tiny_model), load_model(tiny_model)
    install_logprob_head(chunked, 5)
    with torch.no_grad():
        assert torch.equal(plain(input_ids=batch["input_ids"][:, :8]).logits,
                           chunked(input_ids=batch["input_ids"][:, :8]).logits)


def test_the_plain_head_scores_from_the_first_response_position_on(tiny_model, batch):
    model = load_model(tiny_model)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       pixel_values=batch["pixel_values"], image_grid_thw=batch["image_grid_thw"],
                       mm_token_type_ids=modality_types(model, batch["input_ids"])).logits
        values = token_logprobs(model, batch)
    every = logits[:, :-1].float().log_softmax(-1).gather(-1, batch["input_ids"][:, 1:, None]).squeeze(-1)
    start = first_response_position(batch["response_mask"])
    mask = batch["response_mask"]
    assert start > 0 and not mask[:, :start].any() and mask[:, start].any()
    assert not values[:, :start].any()  # the prompt before any response is never scored
    assert torch.allclose(values[:, start:], every[:, start:], atol=1e-5)
