"""What a run records, in the coordinator's process: its events, step metrics, evaluations and phase times, and the
summary built from them. Everything is committed to the run store before it is published, so the API serves
nothing the store does not hold."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

from visiong1.config import RunConfig
from visiong1.eval.report import write_report
from visiong1.eval.trackers import Trackers
from visiong1.faults import crash_once
from actors.telemetry import metric
from visiong1.store import RunStore, SampleGroupPlan
from visiong1.store.events import EventKind


class RunLog:
    """The run's record. `store_round` is the store's index of the round in progress (events are filed under it)."""

    def __init__(self, run_id: str, store: RunStore, run_dir: Path):
        self.run_id, self.store, self.run_dir = run_id, store, run_dir
        self.store_round: int | None = None
        self.history: list[dict] = []  # every step's metrics
        self.evaluations: list[dict] = []  # held-out results, before round 0 and after each round
        self.controls: list[dict] = []  # the same evaluation on altered inputs (blank images)
        self.phase_seconds: dict[str, float] = {}
        self.trackers: Trackers | None = None
        self._events: list[dict] = []
        self._lock = threading.Lock()
        self.current_phase: str | None = None

    def events(self, after: int = 0) -> list[dict]:
        """Events with sequence number >= `after`, in order."""
        with self._lock:
            return self._events[after:]

    def schedule_samples(self, step: int, plans: list[SampleGroupPlan]) -> None:
        """File a step's generated samples in the ledger (as `scheduled`) and count them by planned fate."""
        self.store.schedule_samples(self.run_id, self.store_round, step, plans)
        for fate, count in Counter(reason or "trained" for plan in plans for reason in plan.drop_reasons).items():
            metric("visiong1_run_samples").inc(count, tags={"run": self.run_id, "fate": fate})

    def phase(self, name: str, round_index: int | None) -> None:
        """Announce a phase and show it on the `visiong1_run_phase` gauge (1 for it, 0 for the one before)."""
        if self.current_phase is not None:
            metric("visiong1_run_phase").set(0, tags={"run": self.run_id, "phase": self.current_phase})
        self.current_phase = name
        metric("visiong1_run_phase").set(1, tags={"run": self.run_id, "phase": name})
        self.emit(EventKind.PHASE, phase=name, round=round_index)

    def emit(self, kind: EventKind, **fields) -> dict:
        """Commit the event to the run store (steps as metrics rows), then publish it to `events` readers."""
        if kind is EventKind.STEP:
            self.store.record_metrics(self.run_id, self.store_round, fields["step"], fields)
        else:
            self.store.append_event(self.run_id, kind.value, fields, self.store_round)
        with self._lock:
            event = {"seq": len(self._events), "type": kind.value, "run_id": self.run_id, "time": time.time(),
                     **fields}
            self._events.append(event)
        return event

    def open_trackers(self, config: RunConfig) -> None:
        self.trackers = Trackers(config.tracking, self.run_dir, self.run_id, config.model_dump(mode="json"))

    def close(self) -> None:
        if self.trackers is not None:
            self.trackers.close()

    def commit_step(self, metrics: dict) -> None:
        """Persist a step (run store first, then metrics.jsonl and trackers) and publish it."""
        self.emit(EventKind.STEP, **metrics)
        metric("visiong1_run_step").set(metrics["step"], tags={"run": self.run_id})
        crash_once(f"committed_step_{metrics['step']}")
        self.history.append(metrics)
        with (self.run_dir / "metrics.jsonl").open("a") as sink:
            sink.write(json.dumps(metrics) + "\n")
        self.trackers.log(metrics, metrics["step"])

    def evaluation(self, result: dict, control: bool = False) -> None:
        """Record a held-out evaluation (a `control` goes to the summary's controls, not to the trackers)."""
        if control:
            self.controls.append(result)
            self.emit(EventKind.EVALUATION, control=True, **result)
            return
        self.evaluations.append(result)
        self.trackers.log({"eval/accuracy_mean": result["accuracy_mean"],
                           **{f"eval/accuracy_{d}": v for d, v in result["accuracy"].items()},
                           **{f"eval/benchmark_{name}": figures["accuracy"]
                              for name, figures in result.get("benchmarks", {}).items()}}, result["step"])
        self.emit(EventKind.EVALUATION, **result)

    def phase_time(self, name: str, seconds: float) -> None:
        self.phase_seconds[name] = self.phase_seconds.get(name, 0.0) + seconds

    def reload(self) -> None:
        """Step metrics and evaluations back from the store (after a coordinator restart)."""
        crash_once("resuming")
        self.history = [row.metrics for row in self.store.metrics_for(self.run_id)]
        self.evaluations = [e.payload for e in self.store.events_after(self.run_id, 0, limit=100_000)
                            if e.kind == EventKind.EVALUATION]

    def summary(self, checkpoint: str, rounds: int) -> dict:
        """Held-out accuracy per domain before round 0 and after each round, step-window sampled accuracy, wall
        time per phase; written to summary.json, with the report beside it."""
        window = min(10, len(self.history))  # single steps are noisy: compare the first and last windows
        summary = {"checkpoint": checkpoint, "steps": len(self.history), "rounds": rounds, "window": window,
                   "accuracy_first": float(np.mean([row["reward/accuracy"] for row in self.history[:window]])),
                   "accuracy_last": float(np.mean([row["reward/accuracy"] for row in self.history[-window:]])),
                   "evaluations": self.evaluations, "controls": self.controls,
                   "phase_seconds": {name: round(value, 2) for name, value in self.phase_seconds.items()}}
        (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        return summary | {"report": str(write_report(self.run_dir))}
