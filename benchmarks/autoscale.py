"""Rollout autoscaling under a load that rises and falls: time to react, replica counts against the policy's bounds,
and every step committed exactly once.

A real run, started and driven over the real control plane, on a private local Ray cluster whose logical CPUs fit
the learner, the reward worker and FIT rollout replicas of one CPU each, while the policy may ask for up to MAX
(`rollout.autoscale`: TARGET prompts per replica, cooldown COOLDOWN_S): a replica past what fits stays pending, as
on a full cluster until its autoscaler adds a node. The first round trains with LOAD[0] prompts per step; rounds
started over REST change it to LOAD[1], then LOAD[2] (`round.prompts_per_step`, a round override) for a round
LAST_ROUND_LONGER times as long.

Reported: per step its round, prompts, serving and pending replicas, generate and step seconds; each scaling event
with the step it came before; per load change the steps until the policy decided and until the serving count
changed, and the seconds until that step committed; checks that every step committed once and in order, that no
round's ledger lost a sample, and that the counts stayed within the bounds and what fits. Wall times on 2 cores say
little. When Debian's chromium and Playwright are installed, the run page is captured at the end.

Run: python -m benchmarks.autoscale [--steps 40] [override ...]
Writes benchmarks/results/autoscale.json, autoscale.png and autoscale_run_page.png.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from benchmarks.common import RESULTS, write_result

LOAD = (2, 8, 2)
TARGET, MIN_REPLICAS, MAX_REPLICAS, FIT, COOLDOWN_S = 2, 1, 4, 3, 2
LAST_ROUND_LONGER = 2  # the falling load's round runs this many times --steps: shrinking waits for cooldowns
LOGICAL_CPUS = 4  # learner 0.5 + reward 0.1 + FIT replicas x 1: a fourth replica cannot be placed
TOKEN = "autoscale-benchmark"


def run_overrides(steps: int, model_cache: str) -> list[str]:
    autoscale = (f"{{min_replicas: {MIN_REPLICAS}, max_replicas: {MAX_REPLICAS}, target: {TARGET}, "
                 f"cooldown_s: {COOLDOWN_S}}}")
    return ["name=autoscale", f"model.cache_dir={model_cache}", "model.warm_start_steps=60", "data.num_items=64",
            "eval.enabled=false", "round.rounds=1", f"round.steps={steps}", f"round.prompts_per_step={LOAD[0]}",
            "round.idle_timeout_s=900", "selection.offline_difficulty=false", "selection.influence.enabled=false",
            "rollout.engine=hf", "rollout.samples_per_prompt=4", "rollout.max_new_tokens=16", "rollout.num_cpus=1",
            "rollout.prompts_per_request=1", f"rollout.autoscale={autoscale}", "learner.num_cpus=0.5",
            "reward.num_cpus=0.1"]


def wait_round_done(client: httpx.Client, run_id: str, index: int, console: Console) -> None:
    with console.status(f"round {index} ({LOAD[index]} prompts per step)"):
        while True:
            run = client.get(f"/v1/runs/{run_id}").json()
            states = {r["index"]: r["state"] for r in run["rounds"]}
            if states.get(index) == "done":
                return
            if run["status"] in ("failed", "cancelled") or states.get(index) in ("failed", "cancelled"):
                raise RuntimeError(f"run {run_id} round {index}: {run['status']} {run['rounds'][-1].get('error')}")
            time.sleep(2)


def drive(client: httpx.Client, overrides: list[str], steps: int, console: Console) -> str:
    """Start the run, then one round per further load; cancel the run after the last. Returns the run id."""
    created = client.post("/v1/runs", json={"overrides": overrides})
    created.raise_for_status()
    run_id = created.json()["id"]
    wait_round_done(client, run_id, 0, console)
    for index, load in enumerate(LOAD[1:], start=1):
        length = steps * (LAST_ROUND_LONGER if index == len(LOAD) - 1 else 1)
        started = client.post(f"/v1/runs/{run_id}/rounds",
                              json={"overrides": {"round.prompts_per_step": load, "round.steps": length}})
        started.raise_for_status()
        wait_round_done(client, run_id, index, console)
    return run_id


def finish(client: httpx.Client, store, run_id: str) -> None:
    """Cancel the run (it idles after its last round) and wait for its terminal event."""
    client.post(f"/v1/runs/{run_id}/cancel").raise_for_status()
    deadline = time.monotonic() + 300
    while not any(e.kind == "run_finished" for e in store.events_after(run_id, 0, 100_000)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {run_id} did not finish within 300 s of its cancel")
        time.sleep(1)


def timeline(store, run_id: str) -> tuple[list[dict], list[dict]]:
    """The committed steps (with their replica counts) and the scaling events, each event with the number of
    steps committed before it."""
    events = store.events_after(run_id, 0, 100_000)
    start = events[0].created_at
    steps, scaling = [], []
    for event in events:
        if event.kind == "step":
            metrics = event.payload["metrics"]
            steps.append({"step": event.payload["step"], "round": event.payload["round"],
                          "prompts": LOAD[event.payload["round"]], "serving": int(metrics["rollout/replicas"]),
                          "pending": int(metrics["rollout/pending_replicas"]),
                          "generate_s": round(metrics["time/generate_s"], 2),
                          "step_s": round(metrics["time/step_s"], 2), "t_s": round(event.created_at - start, 1)})
        elif event.kind == "rollout_scaled":
            scaling.append({"before_step": len(steps), **{k: event.payload[k] for k in
                            ("previous", "replicas", "serving", "source", "reason")},
                            "t_s": round(event.created_at - start, 1)})
    return steps, scaling


def reactions(steps: list[dict], scaling: list[dict]) -> list[dict]:
    """Per load change: steps from the round's first step until the policy decided and until the serving count
    changed, and seconds from the round's first commit to the commit of that step."""
    out = []
    for index in range(1, len(LOAD)):
        rows = [s for s in steps if s["round"] == index]
        before = [s for s in steps if s["round"] == index - 1][-1]
        decided = next((e for e in scaling if e["before_step"] >= rows[0]["step"]), None)
        changed = next((s for s in rows if s["serving"] != before["serving"]), None)
        out.append({"round": index, "prompts": f"{LOAD[index - 1]} -> {LOAD[index]}",
                    "steps_to_decision": None if decided is None else decided["before_step"] - rows[0]["step"],
                    "steps_to_serving_change": None if changed is None else changed["step"] - rows[0]["step"],
                    "seconds_to_serving_change": None if changed is None else round(changed["t_s"] - rows[0]["t_s"], 1),
                    "serving_before": before["serving"], "serving_at_end": rows[-1]["serving"],
                    "decisions": sum(rows[0]["step"] <= e["before_step"] <= rows[-1]["step"] for e in scaling)})
    return out


def checks(client: httpx.Client, run_id: str, steps: list[dict]) -> dict:
    ledgers = [client.get(f"/v1/runs/{run_id}/rounds/{i}/ledger").json() for i in range(len(LOAD))]
    return {"steps_once_in_order": [s["step"] for s in steps] == list(range(len(steps))),
            "ledger_lost": sum(ledger["lost"] for ledger in ledgers),
            "ledger_trained": [ledger["trained"] for ledger in ledgers],
            "serving_within_bounds_and_fit": all(MIN_REPLICAS <= s["serving"] <= min(MAX_REPLICAS, FIT) for s in steps),
            "asked_within_bounds": all(s["serving"] + s["pending"] <= MAX_REPLICAS for s in steps)}


def plot(steps: list[dict], target: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [s["step"] for s in steps]
    figure, axes = plt.subplots(figsize=(6, 3.2))
    axes.step(x, [s["serving"] for s in steps], where="post", label="serving")
    axes.step(x, [s["serving"] + s["pending"] for s in steps], where="post", linestyle="--", label="asked (+ pending)")
    axes.step(x, [min(MAX_REPLICAS, max(MIN_REPLICAS, -(-s["prompts"] // TARGET))) for s in steps], where="post",
              linestyle=":", label="load / target")
    for level, name in ((MAX_REPLICAS, "max_replicas"), (FIT, "fits the cluster")):
        axes.axhline(level, color="grey", linewidth=0.8, linestyle="-." if level == FIT else "-")
        axes.annotate(name, (x[0], level + 0.05), fontsize=7, color="grey")
    axes.set_xlabel("step")
    axes.set_ylabel("rollout replicas")
    axes.set_ylim(0, MAX_REPLICAS + 0.6)
    axes.legend(fontsize=7, loc="upper right")
    figure.tight_layout()
    figure.savefig(target, dpi=100)
    plt.close(figure)
    return target


def capture_run_page(base: str, run_id: str, steps: int, target: Path) -> Path | None:
    """A screenshot of the run page once its reward chart holds every step; None without chromium."""
    chromium = shutil.which("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if chromium is None:
        return None
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1100, "height": 1250})
        page.goto(f"{base}/ui/")
        page.fill("#token", TOKEN)
        page.click("#token-form button")
        page.goto(f"{base}/ui/#run={run_id}")
        page.wait_for_function("n => Number(document.getElementById('chart-reward').dataset.points) >= n",
                               arg=steps, timeout=60_000)
        page.screenshot(path=str(target))
        browser.close()
    return target


def show(steps: list[dict], scaling: list[dict], reacted: list[dict], checked: dict, console: Console) -> None:
    table = Table(title="Rollout replicas per step")
    for column in ("step", "round", "prompts", "serving", "pending", "generate s", "step s"):
        table.add_column(column, justify="right")
    for s in steps:
        table.add_row(*(str(s[k]) for k in ("step", "round", "prompts", "serving", "pending", "generate_s", "step_s")))
    console.print(table)
    for event in scaling:
        console.print(f"before step {event['before_step']}: {event['previous']} -> {event['replicas']} "
                      f"(serving {event['serving']}, {event['source']}): {event['reason']}")
    for reaction in reacted:
        console.print(reaction)
    console.print(checked)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40, help="training steps per round")
    parser.add_argument("overrides", nargs="*", help="run config overrides (dotted)")
    args = parser.parse_args()

    from services.api.app import create_app
    from services.api.auth import Scope, Tokens
    from services.api.server import serving_in_thread
    from visiong1.cluster import connect
    from visiong1.config import load_config
    from visiong1.store import RunStore

    console = Console()
    overrides = run_overrides(args.steps, ".cache/visiong1/models") + args.overrides
    with tempfile.TemporaryDirectory(prefix="visiong1-autoscale-") as scratch:
        server = load_config(None, [f"output_dir={scratch}", f"store={scratch}/store.sqlite3",
                                    f"ray.num_cpus={LOGICAL_CPUS}"])
        connect(None, num_cpus=LOGICAL_CPUS, namespace=server.ray.namespace)
        app = create_app(server, tokens=Tokens(((TOKEN.encode(), Scope.WRITE),)))
        with serving_in_thread(app) as base, RunStore.open(server.store) as store, \
                httpx.Client(base_url=base, headers={"authorization": f"Bearer {TOKEN}"}, timeout=600) as client:
            run_id = drive(client, overrides, args.steps, console)
            steps, scaling = timeline(store, run_id)
            page = capture_run_page(base, run_id, len(steps), RESULTS / "autoscale_run_page.png")
            checked = checks(client, run_id, steps)
            finish(client, store, run_id)
    reacted = reactions(steps, scaling)
    show(steps, scaling, reacted, checked, console)
    figures = {"steps": steps, "scaling": scaling, "reactions": reacted, "checks": checked,
               "run_page": page.name if page else None}
    write_result("autoscale", figures, {"load": LOAD, "target": TARGET, "min_replicas": MIN_REPLICAS,
                                        "max_replicas": MAX_REPLICAS, "fits": FIT, "cooldown_s": COOLDOWN_S,
                                        "logical_cpus": LOGICAL_CPUS, "steps_per_round": args.steps,
                                        "overrides": overrides})
    console.print(f"wrote {plot(steps, RESULTS / 'autoscale.png')}")


if __name__ == "__main__":
    main()
