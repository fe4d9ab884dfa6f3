"""Records that cross actor boundaries. New roles extend these rather than invent parallel ones.

Kept free of torch so the control plane can import them: token ids and logprobs are plain lists, weight tensors
travel by ObjectRef.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal

import pyarrow as pa

FinishReason = Literal["stop", "length"]

PROMPT_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("source", pa.string()),
        ("domain", pa.string()),
        ("question", pa.string()),
        ("images", pa.list_(pa.binary())),
        ("answer", pa.string()),
        ("answer_type", pa.string()),
        ("choices", pa.list_(pa.string())),
        ("metadata", pa.string()),  # JSON object: scorer settings such as coords/image_size, provenance
    ]
)


@dataclass(frozen=True)
class PromptItem:
    """One RL-ready question: images as encoded bytes (PNG/JPEG), an answer a rule can verify."""

    id: str
    source: str
    domain: str
    question: str
    images: list[bytes]
    answer: str
    answer_type: str
    choices: list[str] | None = None
    metadata: dict = field(default_factory=dict)

    def scorer_meta(self) -> dict:
        """Keyword arguments the item's scorer takes: its metadata plus the choices, when there are any."""
        return {**self.metadata, "choices": self.choices} if self.choices else dict(self.metadata)

    def reference_answer(self) -> str:
        """What a correct response puts in `\\boxed{}` (the box centre for `point` items)."""
        from visiong1.rewards.grounding import reference_answer  # lazily: this module stays free of the scorers

        return reference_answer(self.answer, self.answer_type)


def items_to_table(items: list[PromptItem]) -> pa.Table:
    """Pack prompt items into an Arrow table (the form prompts travel in through the object store)."""
    columns = {name: [getattr(item, name) for item in items] for name in PROMPT_SCHEMA.names}
    columns["metadata"] = [json.dumps(item.metadata) for item in items]
    return pa.table(columns, schema=PROMPT_SCHEMA)


def table_to_items(table: pa.Table) -> list[PromptItem]:
    """Inverse of `items_to_table`."""
    rows = table.select(PROMPT_SCHEMA.names).to_pylist()
    return [PromptItem(**{**row, "metadata": json.loads(row["metadata"] or "{}")}) for row in rows]


@dataclass
class RolloutSample:
    """One sampled response. `logprobs[i]` is the sampling policy's logprob of `token_ids[i]`."""

    prompt_id: str
    prompt_token_ids: list[int]
    token_ids: list[int]
    logprobs: list[float]
    text: str
    weight_version: int
    finish_reason: FinishReason


@dataclass
class SampleGroup:
    """All samples for one prompt, plus their rewards once scored (aligned with `samples`)."""

    prompt: PromptItem
    samples: list[RolloutSample]
    rewards: list[float] = field(default_factory=list)
    accuracies: list[float] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)


@dataclass
class GroupScores:
    """What the reward pool returns for one group: small enough to pass through the coordinator."""

    prompt_id: str
    rewards: list[float]
    accuracies: list[float]
    reasons: list[str]
    weight_version: int
    """Oldest policy version among the group's samples."""
    excluded: list[bool] = field(default_factory=list)
    """Samples left out of the group (timed out in a domain that excludes them, or cut at the length limit under
    `rollout.overlong.filter`); empty means none."""


@dataclass
class TrainBatch:
    """A learner step's input: scored groups and one advantage per sample (`advantages[g][s]`); None marks a
    sample excluded from its group, which the learner leaves out."""

    groups: list[SampleGroup]
    advantages: list[list[float | None]]
    step: int

    def __post_init__(self) -> None:
        if len(self.groups) != len(self.advantages):
            raise ValueError(f"{len(self.groups)} groups but {len(self.advantages)} advantage rows")
        for group, row in zip(self.groups, self.advantages):
            if len(group.samples) != len(row):
                raise ValueError(f"group {group.prompt.id}: {len(group.samples)} samples, {len(row)} advantages")


@dataclass(frozen=True)
class WeightUpdate:
    """A versioned set of policy weights. `tensors` is an ObjectRef to `dict[name, torch.Tensor]`;
    `names` is None for a full state dict, else the subset it holds (e.g. the language model only)."""

    version: int
    tensors: Any
    names: tuple[str, ...] | None = None

    @property
    def is_full(self) -> bool:
        return self.names is None


@dataclass(frozen=True)
class RoundCursor:
    """Where a run stands at a resumable checkpoint, saved beside the learner's state: with it a restarted
    coordinator continues with the same prompts. Stored as JSON (`to_json`/`from_json`)."""

    steps_done: int
    round: int
    round_start_step: int
    """The run's step count when this round's training began."""
    policy_version: int
    active: list[str]
    """Item ids of the pool still in the curriculum."""
    retired: list[str]
    """Item ids retired as too easy in earlier rounds (replayed with `curriculum.replay_share`)."""
    selected: list[str]
    """The round's selection."""
    sampler: dict
    """The curriculum sampler's state dict."""
    last_metrics: dict | None = None
    """The checkpointed step's metrics, committed on resume if the coordinator died before committing them."""
    round_complete: bool = False
    """Saved by the round's checkpoint phase (trained, carried over and evaluated): a resume only marks it done."""

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> RoundCursor:
        """Also reads cursors written before retired items were kept (no `retired`)."""
        return cls(**{"retired": [], **data})
