"""The project's RL step against TRL's GRPOTrainer on the same model, items and work, run in turn.

Work per RL step on both sides: `--prompts` prompts x `--samples` samples of at most 32 new tokens from the 8-domain
demo's pool, the project's reward rules, one optimizer step at lr 1e-5, no KL term; TRL with loss_type "dapo".
Model (`--size`): `tiny`, the 8-domain demo's warm-started tiny Qwen2.5-VL on the demo's items, or `mid`, the
mid-size Qwen2.5-VL warm-started here on counting answers (MID_WARM_STEPS steps of MID_WARM_BATCH items; a
random-init model earns no reward) on counting items, both sides without gradient checkpointing (TRL's default; the
project turns it on for a model directory), the project with the collective weight sync. The project trains only
groups with a reward spread (TRL trains every sequence), so each project side also reports the sequences it trained
per step: the sides did the same work only where that is prompts x samples.
TRL 1.16.0 is installed by this benchmark into its own environment (`trl-env` in the project's cache directory),
layered over the project's packages, so both sides run the same torch and transformers. The project runs as
`visiong1 demo` (a local Ray cluster, its default engine, the rollout replica on one torch thread, selection and
evaluation off) synchronously (`rollout.max_staleness=0`) and asynchronously (`=1`), its learner on one torch thread
(`sync`, `async`) or on two (`sync_2t`, `async_2t`: `learner.num_cpus=2`); TRL runs in one process with 1 torch
thread and with 2 (the machine's cores). Synchronous, `sync_2t` never runs more than two threads at once, as TRL on
2 does; `async_2t` runs three on two cores while generation overlaps training. Each pair runs the sides in turn;
per side the median seconds per step after two warm-up steps, per pair the ratio to TRL, and over pairs the median
ratio; phase split medians for every side, and for the project the per-step fixed costs: the generate and train
phases' seconds beyond the work timed inside the replica and the learner ranks.

Run: python -m benchmarks.vs_trl [--size tiny|mid] [--pairs 3] [--steps 12] [--prompts 8] [--samples 8]
                                 [--sides sync,sync_2t,async,async_2t,trl1,trl2] [--name NAME]
Writes its figures and their plot (name `vs_trl`, or `vs_trl_mid`, unless --name; .json and .png) into
benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from functools import cache
from pathlib import Path

from rich.console import Console
from rich.table import Table

from benchmarks.common import RESULTS, grouped_bars, write_result

ROOT = Path(__file__).resolve().parent.parent
TRL_VERSION = "1.16.0"
TRL_ENV = ROOT / ".cache" / "visiong1" / "trl-env"
DEMO = "configs/demo_8domains.yaml"
WARM_UP = 2  # steps left out of the medians (first forward passes, allocator growth)
PROJECT_PHASES = ("generate", "reward", "train", "weight_sync", "learner_idle")
MID_WARM_STEPS, MID_WARM_BATCH = 150, 8
# At this size the weights go by the collective sync, as in every config for a real model: through the object
# store the mid-size model's sync took 11.6-14.9 s of a 44-47 s step.
MID_OVERRIDES = ["learner.gradient_checkpointing=false", "rollout.weight_sync=collective"]
# side -> (rollout.max_staleness, learner torch threads) for the project; (None, torch threads) for TRL
SIDES = {"sync": (0, 1), "sync_2t": (0, 2), "async": (1, 1), "async_2t": (1, 2), "trl1": (None, 1),
         "trl2": (None, 2)}


@cache
def trl_environment() -> Path:
    """The TRL environment's interpreter, built on first use: a venv that sees the project's packages and the
    repository, with the project's torchvision fix, plus TRL at TRL_VERSION."""
    python = TRL_ENV / "bin" / "python"
    if python.exists() and subprocess.run([python, "-c", "import trl"], capture_output=True).returncode == 0:
        return python
    subprocess.run([sys.executable, "-m", "venv", TRL_ENV], check=True)
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    project_site = next(path for path in sys.path if path.endswith("site-packages") and Path(path).is_dir())
    (Path(site) / "visiong1_project.pth").write_text(
        f"{project_site}\n{ROOT}\nimport visiong1.torchvision_compat as _tvc; _tvc.install_import_hook()\n")
    subprocess.run([python, "-m", "pip", "install", "-q", f"trl=={TRL_VERSION}"], check=True)
    return python


def prepare_work(scratch: Path, size: str) -> tuple[str, str, dict]:
    """The model of `size` (cached) and a pool of items; returns their paths and the run config."""
    from actors.learner import prepare_model
    from visiong1.config import load_config
    from visiong1.data.pool import build_pool

    config = load_config(DEMO, ["data.num_items=256", *(["data.domains=[counting]"] if size == "mid" else [])])
    pool = scratch / "pool"
    build_pool(config.data, pool, engine="local", progress=False)
    model = prepare_model._function(config) if size == "tiny" else warm_mid_model(config)
    return model, str(pool), {"system_prompt": config.round.system_prompt, "temperature": config.rollout.temperature}


def warm_mid_model(config) -> str:
    """The mid-size model after a short warm start on `config.data`'s answers (cached beside it)."""
    from rich.progress import track

    from visiong1.models.tiny import mid_model_path
    from visiong1.training.warm_start import warm_start, warm_start_pool

    base = mid_model_path(config.model.cache_dir)
    target = base.with_name(f"{base.name}-warm{MID_WARM_STEPS}b{MID_WARM_BATCH}-{'+'.join(config.data.domains)}")
    if not (target / "config.json").exists():
        steps = iter(track(range(MID_WARM_STEPS), description="warm-starting the mid-size model"))
        items = warm_start_pool(config.data, 4 * MID_WARM_STEPS * MID_WARM_BATCH, 0)
        staging = target.with_name(target.name + ".partial")
        warm_start(base, staging, items, config.round.system_prompt, MID_WARM_STEPS, batch_size=MID_WARM_BATCH,
                   progress=lambda step, loss: next(steps, None))
        staging.rename(target)
    return str(target)


def project_step(model: str, pool: str, args: argparse.Namespace, max_staleness: int, learner_threads: int,
                 output: Path) -> dict:
    """One `visiong1 demo` run of `args.steps` RL steps with its learner on `learner_threads` torch threads;
    per-step medians of its wall time and phases."""
    overrides = [f"model.path={model}", f"data.pool={pool}", "round.rounds=1", f"round.steps={args.steps}",
                 f"round.prompts_per_step={args.prompts}", f"rollout.samples_per_prompt={args.samples}",
                 "rollout.max_new_tokens=32", "learner.lr=1e-5", "learner.kl_coef=0", "eval.enabled=false",
                 "eval.blank_image_control=false", "selection.offline_difficulty=false",
                 "selection.dynamic_sampling=false", "selection.influence.enabled=false",
                 "selection.influence.targets=pool",
                 f"rollout.max_staleness={max_staleness}", f"learner.num_cpus={learner_threads}",
                 f"output_dir={output}",
                 *(MID_OVERRIDES if args.size == "mid" else [])]
    subprocess.run([sys.executable, "-m", "visiong1.cli", "demo", "-c", DEMO, *overrides], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL)
    (metrics,) = output.glob("*/metrics.jsonl")
    rows = [json.loads(line) for line in metrics.read_text().splitlines()][WARM_UP:]
    median = lambda key: statistics.median(row.get(key, 0.0) for row in rows)  # noqa: E731
    phases = {f"{phase}_s": median(f"time/{phase}_s") for phase in PROJECT_PHASES}
    # Fixed costs: a phase's seconds beyond the work timed inside the actors (actor hops, serialisation, waits)
    overhead = {"generate_overhead_s": median("time/generate_s") - median("rollout/unit_s"),
                "train_overhead_s": median("time/train_s") - median("train/step_s")}
    return {"step_s": median("time/step_s"), **phases, **overhead, "sequences": median("train/sequences"),
            "staleness_max": max(row["async/staleness_max"] for row in rows)}


def trl_step(python: Path, model: str, pool: str, setting: dict, args: argparse.Namespace, threads: int,
             output: Path) -> dict:
    """One TRL run of `args.steps` steps with `threads` torch threads; per-step medians of its wall time and split."""
    command = [python, "-m", "benchmarks.trl_grpo", "--model", model, "--pool", pool, "--output", output,
               "--steps", str(args.steps), "--prompts", str(args.prompts), "--samples", str(args.samples),
               "--threads", str(threads), "--temperature", str(setting["temperature"]),
               "--system-prompt", setting["system_prompt"]]
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    subprocess.run(command, check=True, cwd=ROOT, env=environment, stdout=subprocess.DEVNULL)
    steps = json.loads(output.read_text())["steps"][WARM_UP:]
    return {key: statistics.median(step[key] for step in steps) for key in ("step_s", "generate_s", "optimise_s")}


def summarise(pairs: list[dict]) -> dict:
    """Per pair each project side's seconds per step over each TRL side's; medians over pairs."""
    sides = pairs[0].keys()
    ratios = {f"{side}_over_{trl}": statistics.median(p[side]["step_s"] / p[trl]["step_s"] for p in pairs)
              for side in sides if not side.startswith("trl") for trl in sides if trl.startswith("trl")}
    return {"pairs": pairs, "median_ratios": ratios}


def run_side(side: str, model: str, pool: str, setting: dict, args: argparse.Namespace, run: Path) -> dict:
    """One side's run (SIDES) in the pair directory `run`."""
    max_staleness, threads = SIDES[side]
    if max_staleness is None:
        return trl_step(trl_environment(), model, pool, setting, args, threads, run / f"{side}.json")
    return project_step(model, pool, args, max_staleness, threads, run / side)


def show(summary: dict) -> None:
    table = Table(title="Seconds per RL step: the project against TRL GRPOTrainer (medians after warm-up)")
    for column in ("pair", "side", "step s", "split"):
        table.add_column(column)
    for index, pair in enumerate(summary["pairs"]):
        for side, figures in pair.items():
            split = ", ".join(f"{key[:-2]} {value:.2f}" for key, value in figures.items()
                              if key.endswith("_s") and key != "step_s")
            table.add_row(str(index), side, f"{figures['step_s']:.3f}", split)
    console = Console(width=160)
    console.print(table)
    console.print({name: round(ratio, 2) for name, ratio in summary["median_ratios"].items()})


def plot(summary: dict, target: Path) -> Path:
    """Seconds per step of each side in each pair."""
    pairs = summary["pairs"]
    return grouped_bars([f"pair {i}" for i in range(len(pairs))],
                        {side: [pair[side]["step_s"] for pair in pairs] for side in pairs[0]},
                        "seconds per RL step (median)", target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("tiny", "mid"), default="tiny")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--sides", type=lambda text: text.split(","), default=list(SIDES),
                        help="comma-separated subset of " + ",".join(SIDES) + ", run in this order in each pair")
    parser.add_argument("--name", help="results name (default vs_trl, or vs_trl_mid with --size mid)")
    args = parser.parse_args()
    if unknown := set(args.sides) - set(SIDES):
        parser.error(f"--sides: unknown {sorted(unknown)}; choose from {list(SIDES)}")
    pairs = []
    with tempfile.TemporaryDirectory(prefix="visiong1-vs-trl-") as scratch:
        model, pool, setting = prepare_work(Path(scratch), args.size)
        for index in range(args.pairs):
            run = Path(scratch) / f"pair{index}"
            run.mkdir()
            pairs.append({side: run_side(side, model, pool, setting, args, run) for side in args.sides})
            print(f"pair {index}: " + ", ".join(f"{side} {f['step_s']:.3f}s" for side, f in pairs[-1].items()))
    summary = summarise(pairs)
    show(summary)
    name = args.name or ("vs_trl" if args.size == "tiny" else "vs_trl_mid")
    summary["plot"] = str(plot(summary, RESULTS / f"{name}.png"))
    model_name = ("demo_8domains warm start (tiny)" if args.size == "tiny" else
                  f"mid-size, warm start {MID_WARM_STEPS}x{MID_WARM_BATCH} on counting, no gradient checkpointing")
    print(write_result(name, summary, {"trl": TRL_VERSION, "model": model_name,
                                           "steps": args.steps, "prompts": args.prompts, "samples": args.samples,
                                           "sides": {side: SIDES[side] for side in args.sides},
                                           "max_new_tokens": 32, "warm_up_steps": WARM_UP}))


if __name__ == "__main__":
    main()
