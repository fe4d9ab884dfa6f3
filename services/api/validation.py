"""Configs posted over REST, validated before anything starts; every refusal names the field path (HTTP 422).

A run's config is the server's own config with the posted (sparse) tree merged on top and dotted overrides applied
last, then checked beyond the typed model: non-finite numbers, absurd sizes, files outside `api.data_roots`, and
server-owned settings (`output_dir`, `store`, `api`, `ray`), which a run may not change: its coordinator must
commit to the store this server reads.
"""

from __future__ import annotations

import copy
import math
import os
from pathlib import Path
from typing import Any

import yaml

from visiong1.config import ConfigError, RunConfig, apply_override, load_config_tree, with_overrides

SERVER_OWNED = ("output_dir", "store", "api", "ray")

SIZE_LIMITS = {
    "round.rounds": 1_000, "round.steps": 1_000_000, "round.prompts_per_step": 65_536,
    "rollout.replicas": 4_096, "rollout.samples_per_prompt": 1_024, "rollout.max_new_tokens": 1 << 20,
    "rollout.max_model_len": 1 << 22, "rollout.tensor_parallel_size": 1_024,
    "learner.ranks": 65_536, "learner.micro_batch_tokens": 1 << 24, "learner.warmup_steps": 1_000_000,
    "model.warm_start_steps": 1_000_000, "data.num_items": 100_000_000, "data.image_size": 8_960,
    "data.images.max_pixels": 100_000_000, "eval.items_per_domain": 1_000_000, "eval.pass_k": 1_024,
    "selection.difficulty_samples": 1_024, "selection.max_generation_batches": 100_000,
    "selection.influence.projection_dim": 1 << 24,
}
"""Upper bounds beyond the typed model's own: values past these are typos, not experiments."""
MAX_ANY_INT = 1 << 53

ROUND_OVERRIDE_KEYS = ("round.steps", "round.prompts_per_step")
ROUND_OVERRIDE_PREFIXES = ("selection.",)
"""What a round started over REST may change; the coordinator applies these to that round only."""


def build_run_config(server: RunConfig, tree: dict[str, Any], overrides: list[str]) -> RunConfig:
    """The config of a run posted to this server, or ConfigError naming every bad field."""
    merged = _merge(server.model_dump(mode="json"), tree)
    for override in overrides:
        _override(merged, override)
    # typed checks first: unknown fields, types, ranges
    config = load_config_tree(merged, keys=tuple(override.partition("=")[0] for override in overrides))
    problems = _beyond_the_model(config)
    served = server.model_dump(mode="json")
    resolved = config.model_dump(mode="json")
    problems += [f"{key}: is set by the server; leave it out" for key in SERVER_OWNED if resolved[key] != served[key]]
    problems += _paths_outside_roots(resolved, served, server.api.data_roots)
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))
    return load_config_tree(_absolute_paths(resolved))


def _override(tree: dict[str, Any], override: str) -> None:
    """`apply_override`, refusing as ConfigError that names the override's key: a blank key (named by the whole
    override), a dotted key with an empty part (`a..b`, `.a`: no setting has an empty name) and a value YAML cannot
    load."""
    key, sep, _ = override.partition("=")
    if sep and key and not key.strip():
        raise ConfigError(f"override {override!r}: the key is blank")
    if sep and key and "" in key.split("."):
        raise ConfigError(f"override {key}: the dotted key has an empty part")
    try:
        apply_override(tree, override)
    except ConfigError:
        raise
    # ValueError: YAML's constructors on out-of-range input (an integer past Python's 4300-digit conversion limit,
    # a date like 2001-13-45); RecursionError: flow collections nested deeper than the parser can recurse.
    except (yaml.YAMLError, ValueError, RecursionError) as error:
        raise ConfigError(f"override {key}: value is not valid YAML: {error}") from None


def round_config(run_config: dict[str, Any], overrides: dict[str, Any]) -> RunConfig:
    """Validate a round's overrides (dotted keys, JSON values) against its run's stored config."""
    bad = [key for key in overrides
           if key not in ROUND_OVERRIDE_KEYS and not key.startswith(ROUND_OVERRIDE_PREFIXES)]
    if bad:
        allowed = ", ".join(ROUND_OVERRIDE_KEYS + tuple(p + "*" for p in ROUND_OVERRIDE_PREFIXES))
        raise ConfigError("invalid round overrides:\n  " + "\n  ".join(
            f"{key}: a round may override only {allowed}" for key in bad))
    config = with_overrides(load_config_tree(run_config), overrides)  # as the coordinator applies them
    problems = _beyond_the_model(config)
    if problems:
        raise ConfigError("invalid round overrides:\n  " + "\n  ".join(problems))
    return config


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _walk(node: Any, path: str = ""):
    """(dotted path, leaf value) of every leaf; list items as `key[i]`."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, f"{path}[{index}]")
    else:
        yield path, node


def _beyond_the_model(config: RunConfig) -> list[str]:
    problems = []
    for path, value in _walk(config.model_dump(mode="python")):
        if isinstance(value, float) and not math.isfinite(value):
            problems.append(f"{path}: must be a finite number, got {value}")
        elif isinstance(value, int) and not isinstance(value, bool):
            limit = SIZE_LIMITS.get(path, MAX_ANY_INT)
            if abs(value) > limit:
                shown = value if value.bit_length() <= 64 else f"an integer of {value.bit_length()} bits"
                problems.append(f"{path}: {shown} is beyond the largest accepted value {limit}")
    return problems


def _data_paths(tree: dict[str, Any]) -> list[tuple[str, str]]:
    paths = [("model.path", tree["model"]["path"]), ("model.cache_dir", tree["model"]["cache_dir"]),
             ("data.pool", tree["data"]["pool"])]
    targets = tree["selection"]["influence"]["targets"]
    if targets not in ("pool", "synthetic"):  # the others name a built target pool's directory
        paths.append(("selection.influence.targets", targets))
    for index, source in enumerate(tree["data"]["sources"]):
        paths += [(f"data.sources[{index}].path", source["path"]),
                  (f"data.sources[{index}].image_root", source["image_root"])]
    return [(path, value) for path, value in paths if value is not None]


def _paths_outside_roots(resolved: dict[str, Any], served: dict[str, Any], roots: list[str]) -> list[str]:
    """Paths a run would read that lie outside every allowed root (the server's own values are trusted)."""
    trusted = set(_data_paths(served))
    problems = []
    for path, value in _data_paths(resolved):
        if "\0" in value:  # no file has such a name, and the OS refuses to resolve it
            problems.append(f"{path}: contains a NUL character")
        elif (path, value) not in trusted and not _inside(value, roots):
            problems.append(f"{path}: {value!r} is outside the allowed data roots (api.data_roots)")
    return problems


def _inside(value: str, roots: list[str]) -> bool:
    if "://" in value:  # a filesystem URI: only under a root given as a URI prefix
        return any("://" in root and value.startswith(root.rstrip("/") + "/") for root in roots)
    # realpath: `..` and symlinks cannot lead out of a root.
    target = Path(os.path.realpath(value))
    return any("://" not in root and target.is_relative_to(os.path.realpath(root)) for root in roots)


def _absolute_paths(resolved: dict[str, Any]) -> dict[str, Any]:
    """Relative data paths pinned to the server's directory: coordinators and workers run elsewhere."""
    tree = copy.deepcopy(resolved)
    if tree["data"]["pool"] is not None and "://" not in tree["data"]["pool"]:
        tree["data"]["pool"] = os.path.abspath(tree["data"]["pool"])
    for source in tree["data"]["sources"]:
        for key in ("path", "image_root"):
            if source[key] is not None and "://" not in source[key]:
                source[key] = os.path.abspath(source[key])
    return tree
