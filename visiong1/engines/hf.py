"""Transformers generation engine: batched multimodal sampling with per-token logprobs and weight versions."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from visiong1.models.families import load_model, load_processor
from visiong1.models.prompting import chat_messages, decode_images, special_token_ids
from visiong1.types import PromptItem, RolloutSample, SampleGroup


@dataclass(frozen=True)
class SamplingParams:
    n: int = 1
    max_new_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    greedy: bool = False


class HFEngine:
    """Holds one policy copy; `weight_version` is stamped on every sample it produces."""

    def __init__(self, model_path: str, system_prompt: str, seed: int = 0):
        self.processor = load_processor(model_path)
        self.processor.tokenizer.padding_side = "left"  # decoder-only batches pad on the left
        self.model = load_model(model_path).eval()
        self.system_prompt = system_prompt
        self.weight_version = 0
        self.eos_id = self.processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
        self.pad_id = self.processor.tokenizer.pad_token_id
        self.banned = [[token] for token in special_token_ids(self.processor.tokenizer)]
        torch.manual_seed(seed)

    @torch.no_grad()
    def generate(self, items: list[PromptItem], params: SamplingParams) -> list[SampleGroup]:
        """`params.n` samples per item. Logprobs are of the temperature-scaled full-vocabulary distribution,
        the same quantity the learner recomputes (banned tokens are masked in sampling only)."""
        texts = [self.processor.apply_chat_template(chat_messages(item, self.system_prompt), tokenize=False,
                                                    add_generation_prompt=True) for item in items]
        images = [decode_images(item) for item in items]
        inputs = self.processor(text=texts, images=images if any(images) else None, padding=True, return_tensors="pt")
        output = self.model.generate(
            **inputs, max_new_tokens=params.max_new_tokens, do_sample=not params.greedy,
            temperature=params.temperature if not params.greedy else None, top_p=params.top_p if not params.greedy else None,
            num_return_sequences=params.n, bad_words_ids=self.banned, eos_token_id=self.eos_id,
            pad_token_id=self.pad_id, output_logits=True, return_dict_in_generate=True,
        )
        prompt_width = inputs["input_ids"].shape[1]
        responses = output.sequences[:, prompt_width:]  # [len(items) * n, new_tokens]
        scale = 1.0 if params.greedy else params.temperature
        logprobs = torch.stack(output.logits, dim=1).div(scale).log_softmax(-1)  # [len(items) * n, new, vocab]
        token_logprobs = logprobs.gather(-1, responses.unsqueeze(-1)).squeeze(-1)
        groups = []
        for index, item in enumerate(items):
            prompt_ids = inputs["input_ids"][index][inputs["attention_mask"][index].bool()].tolist()
            rows = range(index * params.n, (index + 1) * params.n)
            samples = [self._sample(item.id, prompt_ids, responses[row], token_logprobs[row]) for row in rows]
            groups.append(SampleGroup(prompt=item, samples=samples))
        return groups

    def _sample(self, prompt_id: str, prompt_ids: list[int], response: torch.Tensor, logprobs: torch.Tensor) -> RolloutSample:
        ids = response.tolist()
        finish = "length"
        if self.eos_id in ids:
            ids = ids[: ids.index(self.eos_id) + 1]  # keep end-of-turn: the policy must learn to stop
            finish = "stop"
        text = self.processor.tokenizer.decode(ids, skip_special_tokens=True)
        return RolloutSample(prompt_id=prompt_id, prompt_token_ids=prompt_ids, token_ids=ids,
                             logprobs=logprobs[: len(ids)].tolist(), text=text, weight_version=self.weight_version,
                             finish_reason=finish)

    def load_weights(self, tensors: dict[str, torch.Tensor], version: int) -> None:
        """Copy a full or partial state dict into the policy; names must all exist in the model."""
        result = self.model.load_state_dict(tensors, strict=False)
        if result.unexpected_keys:
            raise KeyError(f"weight update v{version} has unknown tensors: {result.unexpected_keys[:5]}")
        self.weight_version = version
