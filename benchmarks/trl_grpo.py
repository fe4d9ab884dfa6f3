"""TRL's GRPOTrainer on a given model and item set: seconds per RL step and their split (runs in the TRL environment).

Started by benchmarks.vs_trl inside the environment it builds (TRL layered over the project's packages, so both sides
run the same torch and transformers); imports only the project's data types and reward rules. One RL step is
`prompts` prompts x `samples` samples of at most `max_new_tokens` tokens and one optimizer step, loss_type "dapo".

Run: python -m benchmarks.trl_grpo --model DIR --pool POOL_DIR --output FILE.json --system-prompt TEXT [--steps N]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tempfile
import time

import torch
from datasets import Dataset
from PIL import Image
from transformers import TrainerCallback
from trl import GRPOConfig, GRPOTrainer

from visiong1.rewards import score
from visiong1.data.pool import load_pool
from visiong1.types import PromptItem


def as_dataset(items: list[PromptItem], system_prompt: str) -> Dataset:
    """TRL's conversational VLM format: images injected before the user's text, as the project's engines do."""
    return Dataset.from_list([{"prompt": [{"role": "system", "content": system_prompt},
                                          {"role": "user", "content": item.question}],
                               "images": [Image.open(io.BytesIO(data)).convert("RGB") for data in item.images],
                               "answer": item.answer, "answer_type": item.answer_type,
                               "meta": json.dumps(item.scorer_meta())} for item in items])


def verifiable_reward(completions, answer, answer_type, meta, **_) -> list[float]:
    """The project's reward rules, on the completion's text."""
    texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
    return [score(text, truth, kind, **json.loads(extra)).score
            for text, truth, kind, extra in zip(texts, answer, answer_type, meta)]


class StepClock(TrainerCallback):
    """Wall seconds of every optimizer step (one RL step here)."""

    def __init__(self):
        self.started, self.seconds = 0.0, []

    def on_step_begin(self, args, state, control, **kwargs):
        self.started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.seconds.append(time.perf_counter() - self.started)


def timed_generation(trainer: GRPOTrainer) -> list[float]:
    """Seconds of each call of the trainer's generate-and-score phase (sampling, rewards, advantages)."""
    seconds, inner = [], trainer._generate_and_score_completions

    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        result = inner(*args, **kwargs)
        seconds.append(time.perf_counter() - started)
        return result

    trainer._generate_and_score_completions = wrapper
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--pool", required=True, help="a pool directory built by the project")
    parser.add_argument("--output", required=True)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--system-prompt", required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    items = load_pool(args.pool)
    with tempfile.TemporaryDirectory(prefix="trl-grpo-") as scratch:
        config = GRPOConfig(output_dir=scratch, per_device_train_batch_size=args.prompts * args.samples,
                            num_generations=args.samples, gradient_accumulation_steps=1, steps_per_generation=1,
                            max_completion_length=args.max_new_tokens, learning_rate=args.lr, loss_type="dapo",
                            beta=0.0, temperature=args.temperature, max_steps=args.steps, logging_steps=1,
                            report_to="none", use_cpu=True, bf16=False, save_strategy="no", seed=args.seed,
                            dataloader_num_workers=0, lr_scheduler_type="constant")
        trainer = GRPOTrainer(model=args.model, reward_funcs=verifiable_reward, args=config,
                              train_dataset=as_dataset(items, args.system_prompt))
        clock, generation = StepClock(), timed_generation(trainer)
        trainer.add_callback(clock)
        trainer.train()
    steps = [{"step_s": total, "generate_s": generate, "optimise_s": total - generate}
             for total, generate in zip(clock.seconds, generation)]
    with open(args.output, "w") as output:
        json.dump({"steps": steps, "median_step_s": statistics.median(s["step_s"] for s in steps[2:])}, output)


if __name__ == "__main__":
    main()
