"""The `visiong1` command.

Commands that need Ray actors or the HTTP service are named by dotted path and imported only when they run, so
this library stays importable without them (the layering the architecture test enforces).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

from visiong1.config import ConfigError, load_config
from visiong1.eval.benchmarks import BENCHMARKS

# `visiong1 demo` and `visiong1 ablate` without -c run the method demo: 3 rounds of selection and GRPO over the 8
# synthetic domains (configs/demo.yaml, the built-in defaults, is the 75-s one-round counting demo).
METHOD_DEMO_CONFIG = "demo_8domains.yaml"
RUNNERS = {"demo": "actors.demo:main", "ablate": "actors.demo:ablate", "eval": "actors.benchmark_eval:main",
           "serve": "services.api.server:main", "reward serve": "services.reward.server:main"}


def bundled_config(name: str) -> Path:
    """A config from the checkout's `configs/` (installs are editable checkouts or images built from one)."""
    path = Path(__file__).resolve().parents[1] / "configs" / name
    if not path.is_file():
        raise ConfigError(f"{path} not found (visiong1 installed without its configs/); pass a config with -c")
    return path


def config_path(args: argparse.Namespace) -> str | Path | None:
    """The YAML a command loads: `-c`, else the method demo for `demo`/`ablate`, else none (built-in defaults)."""
    if args.config or args.command not in ("demo", "ablate"):
        return args.config
    return bundled_config(METHOD_DEMO_CONFIG)


def _add_config_arguments(parser: argparse.ArgumentParser, default: str = "built-in defaults") -> None:
    parser.add_argument("-c", "--config", help=f"YAML run config (default: {default})")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. learner.lr=1e-6")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="visiong1", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the method on the tiny Qwen2.5-VL on a local Ray cluster",
                               description="Build or reuse the tiny model and its warm start, start a local Ray "
                                           "cluster and run the config's rounds (by default 3 rounds of selection "
                                           "and GRPO over the 8 synthetic domains, about 8 minutes on 2 cores; "
                                           "-c configs/demo.yaml: one 75-s counting round); writes runs/<id>/ "
                                           "(config.json, metrics.jsonl, summary.json, report/, checkpoint/).")
    _add_config_arguments(demo, f"configs/{METHOD_DEMO_CONFIG}")
    ablate = commands.add_parser("ablate", help="run the config and its ablations; print held-out accuracy side by side",
                                 description="The config as given, then without influence, without the difficulty "
                                             "filters, and with one round; writes <output_dir>/ablation.json.")
    _add_config_arguments(ablate, f"configs/{METHOD_DEMO_CONFIG}")
    serve = commands.add_parser("serve", help="start the REST control plane (FastAPI + uvicorn)",
                                description="Serve POST /v1/runs and GET /v1/runs/{id}/events on api.host:api.port; "
                                            "connects to ray.address or starts a local Ray cluster.")
    _add_config_arguments(serve)
    plan = commands.add_parser("plan", help="the memory each role of a config needs; refuses what does not fit",
                               description="Builds the configured model on the meta device (model.path's config, or "
                                           "a preset of a published model) and prints, per role, the memory it "
                                           "needs; exits 1 when a GPU role exceeds resources.gpu_memory_gib.")
    _add_config_arguments(plan)
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")
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
    _add_eval_command(commands)
    _add_data_commands(commands)
    _add_client_commands(commands)
    report = commands.add_parser("report", help="write a run's HTML report with plots",
                                 description="Held-out accuracy per domain per round, reward/accuracy per step, "
                                             "group-accuracy histograms, selection funnels, step time by phase.")
    report.add_argument("run_dir", help="run directory (runs/<id>)")
    build = commands.add_parser("build-model", help="build (or reuse) a random-init model and print its path",
                                description="A random-init model of a supported family with a locally trained "
                                            "tokenizer: the tiny one of demos and tests, or the mid-size one "
                                            "(about 325M parameters) benchmarks measure on.")
    build.add_argument("--cache-dir", default=".cache/visiong1/models", help="directory of cached models")
    build.add_argument("--seed", type=int, default=0, help="initialisation seed")
    build.add_argument("--family", default="qwen2_5_vl", choices=["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
    build.add_argument("--size", default="tiny", choices=["tiny", "mid"])
    return parser


def _add_eval_command(commands) -> None:
    evaluate = commands.add_parser(
        "eval", help="evaluate a model on public benchmarks with their official scorers",
        description="Greedy answers from the rollout engine (vLLM, or the config's engine) on local copies of the "
                    "benchmarks (their Hugging Face Parquet or VLMEvalKit TSV), scored by each benchmark's official "
                    "rule; writes <benchmark>.json (per item: prediction, extracted answer, score), summary.json "
                    "and benchmarks.png.")
    evaluate.add_argument("model", help="Hugging Face model directory, a run's checkpoint/ or a checkpoint store")
    evaluate.add_argument("--benchmarks", required=True,
                          help="comma-separated: " + ",".join(BENCHMARKS))
    evaluate.add_argument("--data-root", required=True, help="directory holding <benchmark>/ local copies")
    evaluate.add_argument("--output", default="eval-results", help="directory the results are written to")
    evaluate.add_argument("--limit", type=int, default=None, help="evaluate only the first N items of each benchmark")
    _add_config_arguments(evaluate)


def _run_eval(args, config) -> int:
    from visiong1.eval.benchmarks import BenchmarkFormatError

    names = [name.strip() for name in args.benchmarks.split(",") if name.strip()]
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown or not names:
        print(f"visiong1 eval: --benchmarks: unknown {unknown or names}; known: {', '.join(BENCHMARKS)}",
              file=sys.stderr)
        return 2
    try:
        return _load_runner("eval")(config, args.model, names, args.data_root, args.output, args.limit)
    except (BenchmarkFormatError, FileNotFoundError) as error:
        print(f"visiong1 eval: {error}", file=sys.stderr)
        return 2


def _add_data_commands(commands) -> None:
    data = commands.add_parser("data", help="build, inspect and export RL-ready data pools",
                               description="Pools: Parquet items + manifest.json + rejects.jsonl (visiong1.data).")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    build = data_commands.add_parser(
        "build", help="curate the config's sources and synthetic items into a pool",
        description="Run the data section's sources and generators through conversion rules and validation "
                    "(a Ray Data pipeline on ray.address or a local cluster) into OUT.")
    _add_config_arguments(build)
    build.add_argument("--out", required=True, help="pool directory to create (must not hold a pool)")
    build.add_argument("--local", action="store_true", help="curate in this process instead of on Ray")
    stats = data_commands.add_parser("stats", help="print a pool's tables and write its contact sheet",
                                     description="Per-domain/per-source table, answer types, rejection reasons, "
                                                 "image size histogram and a contact sheet PNG.")
    stats.add_argument("pool", help="pool directory")
    stats.add_argument("--out", help="where to write the PNGs (default: POOL/stats)")
    export = data_commands.add_parser("export-verl", help="write a pool as verl/Vision-G1 training Parquet",
                                      description="One verl row per item; importable back with format: verl.")
    export.add_argument("pool", help="pool directory")
    export.add_argument("output", help="Parquet file to write")


def _add_client_commands(commands) -> None:
    """Commands that talk to a running control plane (visiong1.client); token from VISIONG1_API_TOKEN."""
    def with_url(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser.add_argument("--url", help="control plane URL (default: $VISIONG1_API_URL or http://127.0.0.1:8000)")
        return parser

    runs = commands.add_parser("runs", help="create, list, show, cancel and resume runs on the control plane",
                               description="REST client of `visiong1 serve`; the bearer token comes from "
                                           "VISIONG1_API_TOKEN.")
    runs_commands = runs.add_subparsers(dest="runs_command", required=True)
    create = with_url(runs_commands.add_parser("create", help="start a run from a YAML config (merged over the "
                                                              "server's config)"))
    create.add_argument("config_file", metavar="CONFIG", help="sparse YAML run config")
    create.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides applied last")
    with_url(runs_commands.add_parser("list", help="runs, newest first"))
    for name, text in (("get", "a run with its rounds and config"), ("cancel", "cancel a run"),
                       ("resume", "restart a failed run from its newest checkpoint")):
        with_url(runs_commands.add_parser(name, help=text)).add_argument("run_id", metavar="RUN")
    rounds = commands.add_parser("rounds", help="start, show and cancel rounds of a run",
                                 description="Rounds over REST follow a run's configured rounds.")
    rounds_commands = rounds.add_subparsers(dest="rounds_command", required=True)
    start = with_url(rounds_commands.add_parser("start", help="queue the run's next round"))
    start.add_argument("run_id", metavar="RUN")
    start.add_argument("--steps", type=int, help="RL steps of this round (round.steps)")
    start.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="round overrides: selection.* keys")
    for name, text in (("get", "a round's state and progress"), ("cancel", "cancel a round")):
        parser = with_url(rounds_commands.add_parser(name, help=text))
        parser.add_argument("run_id", metavar="RUN")
        parser.add_argument("index", type=int, metavar="INDEX")
    watch = with_url(commands.add_parser("watch", help="follow a run's events live until it ends",
                                         description="Streams the run's events (SSE), resuming after drops; "
                                                     "exits 1 when the run fails."))
    watch.add_argument("run_id", metavar="RUN")
    watch.add_argument("--after", type=int, default=0, help="start after this event id")
    scale = commands.add_parser("scale", help="scale a run's workers",
                                description="Scale rollout replicas, reward or influence workers of a run while its "
                                            "learners keep training; N `clear` drops a count set earlier.")
    scale_commands = scale.add_subparsers(dest="scale_command", required=True)
    for name, text in (("rollout", "set the run's rollout replica count (overrides rollout.autoscale)"),
                       ("reward", "set the run's reward worker count"),
                       ("influence", "set the run's influence worker count (applied outside selection)")):
        target = with_url(scale_commands.add_parser(name, help=text))
        target.add_argument("run_id", metavar="RUN")
        target.add_argument("count", type=_count_or_clear, metavar="N")


def _count_or_clear(text: str) -> int | None:
    """A worker count, or None for `clear`."""
    return None if text == "clear" else int(text)


def _run_data_command(args) -> int:
    if args.data_command == "stats":
        from visiong1.data.stats import pool_stats

        pool_stats(args.pool, args.out)
        return 0
    if args.data_command == "export-verl":
        from visiong1.data.pool import export_verl

        print(f"{export_verl(args.pool, args.output)} rows -> {args.output}")
        return 0
    config = load_config(args.config, args.overrides)
    from visiong1.data.pool import build_pool

    if not args.local:
        from visiong1.cluster import connect

        connect(config.ray.address, config.ray.num_cpus, config.ray.namespace)
    manifest = build_pool(config.data, args.out, engine="local" if args.local else "ray")
    print(json.dumps({"pool": args.out, "items": manifest["items"], "rejected": manifest["rejected"],
                      "counts": manifest["counts"]["domain"]}, indent=2))
    return 0


def _load_runner(command: str):
    module, function = RUNNERS[command].split(":")
    return getattr(importlib.import_module(module), function)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "export":
        from visiong1.training.export import export_checkpoint

        print(export_checkpoint(args.checkpoint, args.output_dir))
        return 0
    if args.command == "report":
        from visiong1.eval.report import write_report

        try:
            print(write_report(args.run_dir))
        except FileNotFoundError as error:
            print(f"visiong1 report: {error}", file=sys.stderr)
            return 2
        return 0
    if args.command == "data":
        try:
            return _run_data_command(args)
        except (ConfigError, OSError, ValueError) as error:
            print(f"visiong1 data {args.data_command}: {error}", file=sys.stderr)
            return 2
    if args.command in ("runs", "rounds", "watch", "scale"):
        from visiong1.client import run_command

        return run_command(args)
    if args.command == "build-model":
        from visiong1.models.tiny import mid_model_path, tiny_model_path

        build = tiny_model_path if args.size == "tiny" else mid_model_path
        print(build(args.cache_dir, args.seed, args.family))
        return 0
    try:
        config = load_config(config_path(args), args.overrides)
    except (ConfigError, OSError) as error:
        print(f"visiong1 {args.command}: {error}", file=sys.stderr)
        return 2
    if args.command == "config":
        print(json.dumps(config.model_dump(mode="json"), indent=2))
        return 0
    if args.command == "plan":
        return _plan(config, args.json)
    if args.command == "eval":
        return _run_eval(args, config)
    if args.command == "reward":
        return _load_runner(f"reward {args.reward_command}")(config, token_env=args.token_env)
    return _load_runner(args.command)(config)


def _plan(config, as_json: bool) -> int:
    """Print the capacity plan; 1 when a GPU role does not fit, 2 when the model cannot be planned."""
    from visiong1.models.planner import plan, plan_table, run_shortfalls

    try:
        shape, roles = plan(config)
    except (ValueError, OSError) as error:
        print(f"visiong1 plan: {error}", file=sys.stderr)
        return 2
    problems = run_shortfalls(config, roles)
    if as_json:
        print(json.dumps(plan_table(shape, roles) | {"shortfalls": problems}, indent=2))
    else:
        _print_plan(shape, roles)
    for problem in problems:
        print(f"does not fit: {problem}", file=sys.stderr)
    return 1 if problems else 0


def _print_plan(shape, roles) -> None:
    from rich.console import Console
    from rich.table import Table

    from visiong1.models.planner import GIB

    parts = list(dict.fromkeys(name for role in roles for name in role.parts))
    table = Table(title=f"Memory per instance, GiB ({shape.parameters / 1e9:.2f}B parameters, "
                        f"{shape.trainable / 1e9:.2f}B trained)")
    for column in ("role", "device", "count", *parts, "total"):
        table.add_column(column, justify="left" if column in ("role", "device") else "right", no_wrap=column == "role")
    for role in roles:
        cells = [f"{role.parts[name] / GIB:.2f}" if name in role.parts else "" for name in parts]
        table.add_row(role.role, role.device, str(role.count), *cells, f"{role.total / GIB:.2f}")
    Console(width=220).print(table)


if __name__ == "__main__":
    sys.exit(main())
