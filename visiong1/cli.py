"""The `visiong1` command.

Commands that need Ray actors or the HTTP service are named by dotted path and imported only when they run, so
this library stays importable without them (the layering the architecture test enforces).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys

from visiong1.config import ConfigError, load_config

RUNNERS = {"demo": "actors.demo:main", "serve": "services.api.server:main",
           "reward serve": "services.reward.server:main"}


def _add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", help="YAML run config (default: built-in defaults, the CPU demo)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. learner.lr=1e-6")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="visiong1", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run one GRPO round of the tiny Qwen2.5-VL on a local Ray cluster",
                               description="Build or reuse the tiny model, start a local Ray cluster and run one "
                                           "round; writes runs/<id>/ (config.json, metrics.jsonl, checkpoint/).")
    _add_config_arguments(demo)
    serve = commands.add_parser("serve", help="start the REST control plane (FastAPI + uvicorn)",
                                description="Serve POST /v1/runs and GET /v1/runs/{id}/events on api.host:api.port; "
                                            "connects to ray.address or starts a local Ray cluster.")
    _add_config_arguments(serve)
    show = commands.add_parser("config", help="print the resolved config as JSON",
                               description="Validate a config with its overrides and print every field.")
    _add_config_arguments(show)
    reward = commands.add_parser("reward", help="the reward scorers as a service",
                                 description="Rule-based verifiable reward scoring.")
    reward_commands = reward.add_subparsers(dest="reward_command", required=True)
    reward_serve = reward_commands.add_parser(
        "serve", help="serve POST /v1/score, GET /healthz, GET /metrics",
        description="The reward judge behind FastAPI on api.host:api.port, configured by the reward section.")
    _add_config_arguments(reward_serve)
    reward_serve.add_argument("--token-env", default="VISIONG1_REWARD_TOKEN",
                              help="environment variable holding the bearer token (unset: no auth)")
    export = commands.add_parser("export", help="write a checkpoint as a Hugging Face model directory",
                                 description="Weights, config and processor of a resumable checkpoint (a step-* "
                                             "directory, or a checkpoint store whose newest is taken).")
    export.add_argument("checkpoint", help="checkpoint directory, store path or pyarrow filesystem URI")
    export.add_argument("output_dir", help="Hugging Face model directory to write")
    build = commands.add_parser("build-model", help="build (or reuse) the tiny Qwen2.5-VL and print its path",
                                description="Random-init tiny Qwen2.5-VL with a locally trained tokenizer.")
    build.add_argument("--cache-dir", default=".cache/visiong1/models", help="directory of cached tiny models")
    build.add_argument("--seed", type=int, default=0, help="initialisation seed")
    return parser


def _load_runner(command: str):
    module, function = RUNNERS[command].split(":")
    return getattr(importlib.import_module(module), function)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "export":
        from visiong1.training.export import export_checkpoint

        print(export_checkpoint(args.checkpoint, args.output_dir))
        return 0
    if args.command == "build-model":
        from visiong1.models.tiny import tiny_model_path

        print(tiny_model_path(args.cache_dir, args.seed))
        return 0
    try:
        config = load_config(args.config, args.overrides)
    except (ConfigError, OSError) as error:
        print(f"visiong1 {args.command}: {error}", file=sys.stderr)
        return 2
    if args.command == "config":
        print(json.dumps(config.model_dump(mode="json"), indent=2))
        return 0
    if args.command == "reward":
        return _load_runner(f"reward {args.reward_command}")(config, token_env=args.token_env)
    return _load_runner(args.command)(config)


if __name__ == "__main__":
    sys.exit(main())
