from pathlib import Path

import json
import pytest

from visiong1.config import ConfigError, RunConfig, load_config, write_resolved

CONFIG_DIR = Path(__file__).parents[1] / "configs"


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_every_config_file_parses(path):
    assert isinstance(load_config(path), RunConfig)


def test_demo_file_matches_builtin_defaults_that_the_demo_runs():
    demo = load_config(CONFIG_DIR / "demo.yaml")
    assert demo.model_dump(exclude={"name"}) == RunConfig().model_dump(exclude={"name"})


def test_paper_recipe_values():
    paper = load_config(CONFIG_DIR / "vision_g1_7b.yaml")
    assert (paper.learner.lr, paper.learner.clip_low, paper.learner.clip_high) == (1e-6, 0.2, 0.28)
    assert (paper.round.prompts_per_step, paper.rollout.samples_per_prompt) == (128, 16)


def test_unknown_key_in_file_is_rejected_with_its_path(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("learner:\n  learning_rate: 1e-6\n")
    with pytest.raises(ConfigError, match=r"learner\.learning_rate: Extra inputs are not permitted"):
        load_config(bad)


def test_out_of_range_value_is_rejected_with_its_path(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("rollout:\n  top_p: 1.5\n")
    with pytest.raises(ConfigError, match=r"rollout\.top_p: Input should be less than or equal to 1"):
        load_config(bad)


def test_dotted_overrides_apply_and_parse_yaml_values():
    config = load_config(None, ["learner.lr=1e-6", "data.domains=[counting]", "rollout.replicas=3"])
    assert (config.learner.lr, config.data.domains, config.rollout.replicas) == (1e-6, ["counting"], 3)


@pytest.mark.parametrize("override, message", [
    ("learner.lrr=1", r"learner\.lrr: Extra inputs"),
    ("round.steps=0", r"round\.steps: Input should be greater than or equal to 1"),
    ("selection.pass_rate_low=0.9", r"pass_rate_low \(0\.9\) must be below pass_rate_high"),
    ("learner", r"not of the form dotted\.key=value"),
    ("learner.lr.x=1", r"'lr' is a value, not a section"),
    ("model.warm_start_cpus=8", r"warm_start_cpus \(8\) exceeds ray\.num_cpus \(4\)"),
    ("data.pool=/pools/real selection.influence.targets=synthetic", r"targets=synthetic makes targets of the synthetic"),
])
def test_bad_overrides_are_rejected(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(CONFIG_DIR / "demo.yaml", override.split(" "))


def test_resolved_config_round_trips(tmp_path):
    config = load_config(None, ["round.steps=7"])
    written = write_resolved(config, tmp_path)
    assert RunConfig.model_validate(json.loads(written.read_text())) == config


def test_paper_config_resolves_to_the_released_single_node_recipe():
    """The Vision-G1 paper's released single-node recipe (arXiv 2508.12680), values outside parentheses."""
    paper = load_config(CONFIG_DIR / "vision_g1_7b.yaml")
    assert paper.model.path == "Qwen/Qwen2.5-VL-7B-Instruct" and paper.learner.freeze_vision
    assert paper.learner.advantage_std_scale  # GRPO: (r - mean) / (std + 1e-6)
    assert (paper.round.prompts_per_step, paper.rollout.samples_per_prompt) == (128, 16)
    assert (paper.learner.clip_low, paper.learner.clip_high, paper.learner.dual_clip) == (0.2, 0.28, 10.0)
    assert paper.learner.aggregation == "token-mean" and paper.learner.kl_coef == 0 == paper.learner.entropy_coef
    assert (paper.learner.lr, paper.learner.warmup_steps, paper.learner.weight_decay, paper.learner.grad_clip) == \
        (1e-6, 10, 0.01, 1.0)
    assert paper.rollout.max_new_tokens == 4096 and paper.rollout.max_model_len >= 2048 + 4096
    assert paper.selection.dynamic_sampling and (paper.selection.pass_rate_low, paper.selection.pass_rate_high) == (0.2, 0.8)
    assert paper.selection.max_generation_batches == 40 and paper.selection.difficulty_samples == 5
    assert (paper.rollout.temperature, paper.rollout.top_p, paper.rollout.gpu_memory_utilization) == (1.0, 1.0, 0.7)
    assert (paper.data.images.min_pixels, paper.data.images.max_pixels) == (256 * 28 * 28, 1280 * 28 * 28)
    assert paper.learner.backend == "fsdp2" and paper.learner.gradient_checkpointing
    assert paper.learner.ranks * paper.learner.num_gpus + paper.rollout.replicas * paper.rollout.num_gpus == 8
