"""A chaos soak: a multi-round run started over REST while crash points SIGKILL its processes, one at a time.

A real control plane (uvicorn, the Ray launcher) starts the run; `visiong1.faults` crash points armed in every
process of the run kill, at their k-th arrival, a rollout replica (during generation or a weight load), a reward
worker (during scoring), a learner rank (during training) or the coordinator (after a committed step, or during its
own resume). The run must finish by itself: Ray restarts the coordinator, the run retries from its newest
checkpoint, replicas are replaced. Then, from the run store: every step has exactly one committed row, the sample
ledger lost nothing, and per fault the recovery time (the fault's marker file to the next step committed after
it; it includes that step's own time). A fault-free run of the same config gives the extra wall time.

Run: python -m benchmarks.chaos [--faults-per-point 4] [--rounds 3] [--steps 8]
Writes benchmarks/results/chaos.json (and chaos.png). tests/test_chaos.py runs a short soak in CI.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console

from benchmarks.common import RESULTS, start_local, write_result
from services.api.app import create_app
from services.api.auth import Scope, Tokens
from services.api.launcher import RayLauncher
from services.api.server import serving_in_thread
from visiong1.client import Client
from visiong1.config import load_config_tree
from visiong1.faults import fault_env
from visiong1.store import RunStore

TOKEN = "chaos-token-0123456789abcdef"
NAMESPACE = "visiong1-chaos"
ROLE_OF = {"committed_step": "coordinator", "resuming": "coordinator", "generate": "rollout replica",
           "weight_load": "rollout replica", "score": "reward worker", "train": "learner rank",
           "writing_shards": "learner rank", "before_manifest": "coordinator", "before_rename": "coordinator",
           "before_retain": "coordinator"}
SMALL_RUN = ["data.num_items=32", "eval.enabled=false", "round.prompts_per_step=4", "rollout.samples_per_prompt=4",
             "rollout.engine=hf", "rollout.max_new_tokens=8", "rollout.num_cpus=0.5", "reward.num_cpus=0.1",
             "model.warm_start_steps=60", "round.checkpoint_every=2", "round.retry_backoff_s=0.5",
             "rollout.weight_sync=object_store"]


def role_of(fault: str) -> str:
    """The role a struck fault killed: `committed_step_5@1` -> coordinator."""
    return ROLE_OF[fault.partition("@")[0].rstrip("0123456789").rstrip("_")]


IN_STEP_POINTS = ("generate", "weight_load", "score", "train")


def fault_schedule(steps: int, rounds: int, per_point: int) -> list[str]:
    """`per_point` faults at each crash point, spread over the run so that recoveries rarely overlap: coordinator
    kills after evenly spaced committed steps (the first half of them followed by a kill during the resume they
    cause), and the in-step points at arrivals staggered between them (each point arrives about once a step)."""
    total_steps = steps * rounds
    spacing = max(len(IN_STEP_POINTS) + 2, total_steps // per_point)
    faults = [f"committed_step_{spacing * i + spacing - 1}" for i in range(per_point)]
    faults += [f"resuming@{i + 1}" for i in range(0, per_point, 2)]
    faults += [f"{point}@{spacing * i + offset + 1}" for offset, point in enumerate(IN_STEP_POINTS)
               for i in range(per_point)]
    return faults


@contextmanager
def control_plane(output_dir: Path, model_cache: str, faults: list[str], namespace: str = NAMESPACE):
    """A real control plane on the connected Ray cluster (namespace `namespace`) whose coordinators, and their
    role actors, run with `faults` armed (markers in `<output_dir>/faults`); yields (its client, its store)."""
    markers = output_dir / "faults"
    markers.mkdir(parents=True, exist_ok=True)
    config = load_config_tree({"output_dir": str(output_dir), "model": {"cache_dir": model_cache},
                               "ray": {"namespace": namespace}})
    with RunStore.open(output_dir / "store.sqlite3") as store:
        launcher = RayLauncher(store, namespace, start_timeout_s=300,
                               coordinator_env=fault_env(markers, *faults) if faults else None)
        app = create_app(config, launcher=launcher, tokens=Tokens(((TOKEN.encode(), Scope.WRITE),)))
        with serving_in_thread(app) as url, Client(url, TOKEN, timeout_s=300) as client:
            yield client, store


def soak(output_dir: Path, model_cache: str, overrides: list[str], faults: list[str], namespace: str = NAMESPACE,
         timeout_s: float = 3600) -> dict:
    """One run over REST with `faults` armed (none: the fault-free baseline); returns its accounting."""
    with control_plane(output_dir, model_cache, faults, namespace) as (client, store):
        started = time.monotonic()
        run_id = client.create_run(overrides=overrides)["id"]
        events = list(client.events(run_id))
        return account(store, run_id, events, output_dir / "faults", time.monotonic() - started)


def account(store: RunStore, run_id: str, events: list[dict], markers: Path, wall_s: float) -> dict:
    """What the run store says about the run: its end, steps, ledger per round, and each fault's recovery."""
    rows = store.metrics_for(run_id)
    rounds = store.list_rounds(run_id)
    ledgers = [store.ledger_summary(run_id, round_.index) for round_ in rounds]
    struck = sorted(markers.glob("*@*"), key=lambda marker: marker.stat().st_mtime)
    recoveries = {}
    for marker in struck:
        after = [row.created_at for row in rows if row.created_at > marker.stat().st_mtime]
        recoveries[marker.name] = round(min(after) - marker.stat().st_mtime, 2) if after else None
    per_role: dict[str, int] = {}
    for marker in struck:
        per_role[role_of(marker.name)] = per_role.get(role_of(marker.name), 0) + 1
    kinds = [event["type"] for event in events]
    return {"run_id": run_id, "ended": kinds[-1], "wall_s": round(wall_s, 1),
            "summary": events[-1]["payload"],
            "rounds_done": sum(round_.state.value == "done" for round_ in rounds),
            "steps": [row.step for row in rows], "superseded_steps": [row.step for row in store.superseded_for(run_id)],
            "ledgers": ledgers, "samples_lost": sum(ledger["lost"] for ledger in ledgers),
            "faults": len(struck), "faults_per_role": per_role, "recovery_s": recoveries,
            "retries": kinds.count("run_retrying"), "resumes": kinds.count("run_resumed"),
            "replicas_replaced": kinds.count("rollout_replica_replaced")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faults-per-point", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    console = Console()
    model_cache = str(Path(start_local(NAMESPACE)).parent)
    overrides = SMALL_RUN + [f"round.rounds={args.rounds}", f"round.steps={args.steps}",
                             f"round.max_retries={4 * args.faults_per_point}"]
    faults = fault_schedule(args.steps, args.rounds, args.faults_per_point)
    with tempfile.TemporaryDirectory() as scratch:
        console.print("[bold]fault-free baseline[/]")
        baseline = soak(Path(scratch) / "baseline", model_cache, overrides, [])
        console.print(f"[bold]soak with {len(faults)} armed faults[/]")
        chaos = soak(Path(scratch) / "chaos", model_cache, overrides, faults)
    recovery = [seconds for seconds in chaos["recovery_s"].values() if seconds is not None]
    figures = {"faults": chaos["faults"], "faults_per_role": chaos["faults_per_role"],
               "run_finished": chaos["ended"] == "run_finished", "rounds_done": chaos["rounds_done"],
               "steps_committed_once": chaos["steps"] == list(range(args.rounds * args.steps)),
               "samples_lost": chaos["samples_lost"], "retries": chaos["retries"], "resumes": chaos["resumes"],
               "replicas_replaced": chaos["replicas_replaced"],
               "recovery_s_median": round(statistics.median(recovery), 2) if recovery else None,
               "recovery_s_max": max(recovery, default=None),
               "wall_s": chaos["wall_s"], "baseline_wall_s": baseline["wall_s"],
               "extra_wall_ratio": round(chaos["wall_s"] / baseline["wall_s"], 2)}
    path = write_result("chaos", figures, {"overrides": overrides, "faults_armed": faults,
                                           "recovery_s": chaos["recovery_s"], "ledgers": chaos["ledgers"]})
    plot_recoveries(chaos["recovery_s"], RESULTS / "chaos.png")
    console.print_json(json.dumps(figures))
    console.print(f"wrote {path}")


def plot_recoveries(recovery_s: dict[str, float | None], target: Path) -> None:
    """Recovery seconds per fault, in the order they struck, coloured by role."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [name for name, seconds in recovery_s.items() if seconds is not None]
    roles = [role_of(name) for name in names]
    colours = {role: f"C{i}" for i, role in enumerate(sorted(set(roles)))}
    figure, axes = plt.subplots(figsize=(10, 4))
    axes.bar(range(len(names)), [recovery_s[name] for name in names], color=[colours[role] for role in roles])
    axes.set_xticks(range(len(names)), names, rotation=70, fontsize=7)
    axes.set_ylabel("fault to next committed step (s)")
    axes.legend(handles=[plt.Rectangle((0, 0), 1, 1, color=c) for c in colours.values()], labels=list(colours))
    figure.tight_layout()
    figure.savefig(target, dpi=120)
    plt.close(figure)


if __name__ == "__main__":
    main()
