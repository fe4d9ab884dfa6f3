"""Coordinator role: one actor per run that drives a round and records every event.

The round loop reads like the method: prepare, select (difficulty band, influence), then per step sample ->
generate -> score (dynamic sampling) -> advantages -> train -> sync weights. Each phase is a function with a named timer. No torch here: the control
plane imports this module to start runs.
"""

from __future__ import annotations

import json
import threading
import time
import traceback
import uuid
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import ray

from actors.common import get_within
from actors.influence import InfluencePool
from actors.learner import LearnerGroup, prepare_model
from actors.reward import RewardPool
from actors.rollout import RolloutGroup
from actors.selection import (SampledStep, dynamic_metrics, dynamic_sample, evaluate, generate_and_score,
                              score_difficulty)
from visiong1.algorithms.advantages import grpo_advantages
from visiong1.config import RunConfig, load_config_tree, write_resolved
from visiong1.data.pool import load_pool
from visiong1.eval.heldout import (TARGET_SEED_OFFSET, blank_images, distinct_synthetic, held_out_hashes, item_hash,
                                   per_domain, sample_per_domain, split_held_out, synthetic_held_out)
from visiong1.eval.report import write_report
from visiong1.eval.trackers import Trackers
from visiong1.data.synthetic import generate_pool
from visiong1.selection.difficulty import DifficultyStore
from visiong1.selection.scoring import keep_decisions
from visiong1.store import DEFAULT_FILENAME, Round, RoundState, Run, RunCancelled, RunNotFound, RunStore
from visiong1.training.checkpoint import CheckpointStore
from visiong1.selection.curriculum import CurriculumSampler, answer_strata, carry_over
from visiong1.selection.lineage import funnel, new_lineage, read_round_manifest, write_round_manifest
from visiong1.types import GroupScores, PromptItem, items_to_table

TERMINAL_EVENTS = ("run_finished", "run_failed")
ROUND_ORDER = (RoundState.PENDING, RoundState.SCORING, RoundState.SELECTING, RoundState.TRAINING,
               RoundState.EVALUATING, RoundState.CHECKPOINTING, RoundState.DONE)


@ray.remote(num_cpus=0, max_concurrency=8)
class Coordinator:
    """`run()` blocks for the whole round (call it without waiting); `events(after)` may be polled meanwhile."""

    def __init__(self, run_id: str, config: RunConfig, run_dir: str):
        self.run_id = run_id
        self.base_config = config  # the run's config; `config` is the round in progress's (with its overrides)
        self.config = config
        self.run_dir = Path(run_dir)
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.round_index, self.global_step = 0, 0
        self.round_dir = self.run_dir / "rounds" / "000"
        self.lineage: dict[str, dict] = {}
        self.influence_verdicts: dict[str, tuple[float, str]] = {}  # carried when curriculum.rescore_influence=False
        self.history: list[dict] = []  # every step's metrics
        self.evaluations: list[dict] = []  # held-out results, before round 0 and after each round
        self.controls: list[dict] = []  # the same evaluation on altered inputs (blank images)
        self.phase_seconds: dict[str, float] = {}
        self.store = RunStore.open(config.store or Path(config.output_dir) / DEFAULT_FILENAME)
        self.store_round: int | None = None  # the store's index of the round in progress
        self.trackers: Trackers | None = None
        self._events: list[dict] = []
        self._lock = threading.Lock()
        self.policy_version = 0  # the learner's newest weight version, as last pushed to rollout
        self.roles: list = []  # actor groups started by this run, stopped when it ends

    # --- event log -------------------------------------------------------------------------------------------
    def events(self, after: int = 0) -> list[dict]:
        """Events with sequence number >= `after`, in order."""
        with self._lock:
            return self._events[after:]

    def _emit(self, kind: str, **fields) -> dict:
        """Commit the event to the run store (steps as metrics rows), then publish it to `events` readers."""
        if kind == "step":
            self.store.record_metrics(self.run_id, self.store_round, fields["step"], fields)
        else:
            self.store.append_event(self.run_id, kind, fields, self.store_round)
        with self._lock:
            event = {"seq": len(self._events), "type": kind, "run_id": self.run_id, "time": time.time(), **fields}
            self._events.append(event)
        return event

    @contextmanager
    def _timed(self, timings: dict, phase: str):
        started = time.perf_counter()
        yield
        timings[f"time/{phase}_s"] = time.perf_counter() - started

    @contextmanager
    def _phase(self, name: str):
        """A named phase of the run: announced as an event, its wall time summed into the summary."""
        self._emit("phase", phase=name, round=self.round_index)
        started = time.perf_counter()
        yield
        self.phase_seconds[name] = self.phase_seconds.get(name, 0.0) + time.perf_counter() - started

    # --- the run: rounds of select -> train -> curriculum -> evaluate ----------------------------------------------
    def run(self) -> dict:
        """Run every round end to end; returns the summary (also the `run_finished` event and summary.json). After
        a restart of this actor (Ray retries `run`), it resumes from the last resumable checkpoint."""
        cfg = self.config.round
        resume_from = self._resume_point()
        if resume_from is None:
            self.store.create_run(self.run_id, self.config.model_dump(mode="json"))
            self._emit("run_started", run_dir=str(self.run_dir), rounds=cfg.rounds, steps=cfg.steps)
        try:
            write_resolved(self.config, self.run_dir)
            self.trackers = Trackers(self.config.tracking, self.run_dir, self.run_id, self.config.model_dump(mode="json"))
            self._start_roles()
            cursor = self._restore(resume_from) if resume_from else None
            if cursor is None:
                with self._phase("evaluate"):
                    self._evaluate("initial")
            done = sum(r.state is RoundState.DONE for r in self.store.list_rounds(self.run_id))
            for _ in range(cfg.rounds - done):
                stored = self.store.active_round(self.run_id) or self.store.start_round(self.run_id)
                self._round(stored, cursor if cursor and cursor["round"] == stored.index else None)
                cursor = None
            while (requested := self._wait_for_round()) is not None:
                self._round(requested)
            if self.config.eval.blank_image_control:
                with self._phase("evaluate"):
                    self._evaluate("blank_images", blank_images(self.held_out), control=True)
            with self._phase("checkpoint"):
                checkpoint = self._checkpoint()
        except RunCancelled as cancelled:  # a request through the store, honoured at a step boundary
            self._emit("run_cancelled", reason=str(cancelled))
            self._emit("run_finished", cancelled=str(cancelled), steps=self.global_step)  # streams end on it
            return {"cancelled": str(cancelled)}
        except BaseException as error:
            message = f"{type(error).__name__}: {error}"
            if self.store.active_round(self.run_id) is not None:  # fail the round in progress, resumable
                self.store.transition_round(self.run_id, self.store_round, RoundState.FAILED, error=message)
            self._emit("run_failed", error=message, traceback=traceback.format_exc())
            raise
        finally:
            self._stop_roles()
            if self.trackers is not None:
                self.trackers.close()
        summary = self._summary(checkpoint)
        self._emit("run_finished", **summary)
        return summary

    # --- resume after a coordinator restart ----------------------------------------------------------------------
    def _resume_point(self) -> str | None:
        """The newest resumable checkpoint when this run is already in the store (this actor restarted)."""
        try:
            self.store.get_run(self.run_id)
        except RunNotFound:
            return None
        latest = CheckpointStore(str(self.run_dir / "checkpoints")).latest()
        if latest is None:
            raise RuntimeError(f"run {self.run_id} restarted before its first resumable checkpoint; start a new run "
                               f"(round.checkpoint_every=1 makes every step resumable)")
        return latest

    def _restore(self, path: str) -> dict:
        """Learner state and the data cursor from `path`; the rollout replicas get the restored weights, and the
        coordinator's history comes back from the store. Returns the cursor."""
        cursor = self.learner.restore(str(self.run_dir / "checkpoints"), path, self.config.round.step_timeout_s)
        self.global_step, self.active, self.retired = cursor["steps_done"], cursor["active"], cursor.get("retired", [])
        self.policy_version = min(self.rollout.update_weights(self.learner.async_export_weights(),
                                                              self.config.round.step_timeout_s))
        self.store_round = cursor["round"]
        committed = self.store.last_committed_step(self.run_id, cursor["round"])
        if cursor.get("last_metrics") and (committed is None or committed < self.global_step - 1):
            self._commit_step(cursor["last_metrics"])  # saved, then the actor died before committing it
        self.history = [row.metrics for row in self.store.metrics_for(self.run_id)]
        if self.history and self.history[-1]["step"] >= self.global_step:
            raise RuntimeError(f"steps up to {self.history[-1]['step']} are committed but the newest checkpoint holds "
                               f"{self.global_step} steps: resuming would repeat steps (round.checkpoint_every=1 "
                               f"checkpoints every step)")
        self.evaluations = [e.payload for e in self.store.events_after(self.run_id, 0, limit=100_000)
                            if e.kind == "evaluation"]
        self._emit("run_resumed", checkpoint=path, steps_done=self.global_step, round=cursor["round"])
        return cursor

    def _wait_for_round(self) -> Round | None:
        """A round started over REST (pending in the store), waiting up to `round.idle_timeout_s` for one."""
        deadline = time.monotonic() + self.base_config.round.idle_timeout_s
        while True:
            self._check_cancel()
            pending = self.store.active_round(self.run_id)
            if pending is not None:
                return pending
            if time.monotonic() >= deadline:
                self._refuse_late_round()
                return None
            time.sleep(0.5)

    def _refuse_late_round(self) -> None:
        """A round requested in the instant the idle wait ended is cancelled rather than left pending forever."""
        late = self.store.active_round(self.run_id)
        if late is not None and late.state is RoundState.PENDING:
            self.store.transition_round(self.run_id, late.index, RoundState.CANCELLED)

    def _round(self, stored: Round, cursor: dict | None = None) -> None:
        """One round: select from the current pool, train, carry the curriculum over, evaluate, checkpoint. The
        round's overrides (`round.steps`, `selection.*`) apply to it alone. With a resume `cursor` from inside this
        round's training, selection is not repeated and training continues after the checkpointed step."""
        index = stored.index
        self.config = _with_overrides(self.base_config, stored.overrides)
        self.round_index, self.round_dir = index, self.run_dir / "rounds" / f"{index:03d}"
        self.store_round = index
        self._emit("round_started", round=index, pool=len(self.active), overrides=stored.overrides)
        if cursor is None:
            self._transition(RoundState.SCORING if self.config.selection.offline_difficulty else RoundState.SELECTING)
            with self._phase("select"):
                selected = self._select()
            self._write_lineage(final=False)  # a resumed round reads the selection back from it
            first_step, sampler_state = 0, None
            if index and self.config.learner.kl_coef and self.config.learner.kl_reference == "round":
                self.learner.reset_reference(self.config.round.step_timeout_s)
        else:
            selected, sampler_state = cursor["selected"], cursor["sampler"]
            self.lineage = {row["id"]: row for row in read_round_manifest(self.round_dir / "manifest.parquet")}
            first_step = self.global_step - cursor["round_start_step"]
        curriculum = self.config.curriculum
        strata = answer_strata(self.items[i] for i in selected) if curriculum.answer_balance else None
        sampler = CurriculumSampler({i: self.items[i].domain for i in selected}, curriculum.domain_weights,
                                    self.config.round.seed + index, curriculum.domain_mix,
                                    {i: self.items[i].domain for i in self.retired}, curriculum.replay_share, strata)
        if sampler_state:
            sampler.load_state_dict(sampler_state)
        self._train(sampler, selected, first_step)
        self._transition(RoundState.EVALUATING)
        with self._phase("curriculum"):
            self._write_lineage()
            self.active, retired_easy, retired = carry_over(list(self.lineage.values()), self.active, curriculum)
            self.retired += retired_easy
            self._emit("curriculum", round=index, next_pool=len(self.active), **retired, **sampler.metrics())
        with self._phase("evaluate"):
            self._evaluate(f"round_{index}")
        self._transition(RoundState.CHECKPOINTING)
        with self._phase("checkpoint"):
            self._save_resumable(sampler, selected, self.global_step)
        self._transition(RoundState.DONE)

    def _train(self, sampler: CurriculumSampler, selected: list[str], first_step: int) -> None:
        """The round's steps from `first_step`; a due checkpoint is saved before the step is committed, so a
        committed step is never lost to a restart and never repeated after one."""
        self._transition(RoundState.TRAINING)
        round_start = self.global_step - first_step
        with self._phase("train"):
            for local_step in range(first_step, self.config.round.steps):
                self._between_steps()
                metrics = self._step(self.global_step, sampler)
                self.global_step += 1
                if self._checkpoint_due(local_step):
                    self._save_resumable(sampler, selected, round_start, metrics)
                self._commit_step(metrics)

    def _between_steps(self) -> None:
        """Step boundary: honour cancel requests, replace rollout replicas that fail their health probe, and apply
        the REST replica target (learners untouched)."""
        run = self._check_cancel()
        for pid in self.rollout.check_health():
            self._emit("rollout_replica_replaced", pid=pid, reason="health probe unanswered")
        if run.rollout_replicas is not None and run.rollout_replicas != self.rollout.size():
            before = self.rollout.size()
            self.rollout.scale(run.rollout_replicas)
            self._emit("rollout_scaled", replicas=self.rollout.size(), previous=before)

    def _check_cancel(self) -> Run:
        """The run's row; a cancel request for the run or the round in progress ends the round `cancelled`."""
        run = self.store.get_run(self.run_id)
        active = self.store.active_round(self.run_id)
        if run.cancel_requested or (active is not None and active.cancel_requested):
            if active is not None:
                self.store.transition_round(self.run_id, active.index, RoundState.CANCELLED)
            raise RunCancelled(f"cancel requested for {'the run' if run.cancel_requested else f'round {active.index}'}")
        return run

    def _transition(self, state: RoundState) -> None:
        """Commit the round's new state (the store writes its `round_state` event in the same transaction); a
        resumed round may already be in it."""
        current = self.store.get_round(self.run_id, self.store_round).state
        position = ROUND_ORDER.index(current) if current in ROUND_ORDER else -1  # a failed round resumes anywhere
        if position < ROUND_ORDER.index(state):
            self.store.transition_round(self.run_id, self.store_round, state)

    def _summary(self, checkpoint: str) -> dict:
        """Run summary: held-out accuracy per domain before round 0 and after each round, step-window sampled
        accuracy, wall time per phase; also written to summary.json."""
        window = min(10, len(self.history))  # single steps are noisy: compare the first and last windows
        summary = {"checkpoint": checkpoint, "steps": len(self.history), "rounds": self.config.round.rounds,
                   "window": window,
                   "accuracy_first": float(np.mean([row["reward/accuracy"] for row in self.history[:window]])),
                   "accuracy_last": float(np.mean([row["reward/accuracy"] for row in self.history[-window:]])),
                   "evaluations": self.evaluations, "controls": self.controls,
                   "phase_seconds": {name: round(value, 2) for name, value in self.phase_seconds.items()}}
        (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        return summary | {"report": str(write_report(self.run_dir))}

    def _start_roles(self) -> None:
        cfg = self.config
        self.items = {item.id: item for item in self._pool_items()}
        self.held_out = self._held_out_items()
        self.targets = self._influence_targets() if cfg.selection.influence.enabled else []
        self.active = sorted(set(self.items) - {item.id for item in self.targets})
        self.retired: list[str] = []  # retired as too easy in earlier rounds: replayed with curriculum.replay_share
        with self._phase("prepare_model"):  # builds the tiny model and its warm start unless cached
            task = prepare_model.options(num_cpus=cfg.model.warm_start_cpus).remote(cfg)
            self.model_path = get_within(task, cfg.round.step_timeout_s, "model preparation task")
        with self._phase("start_actors"):
            self._start_actors()

    def _start_actors(self) -> None:
        cfg = self.config
        self.rollout = RolloutGroup(self.model_path, cfg.rollout, cfg.round.system_prompt, cfg.round.seed,
                                    cache_root=str(Path(cfg.model.cache_dir).parent / "engines"))
        self.rewards = RewardPool(cfg.reward)
        influence = cfg.selection.influence
        self.influence = (InfluencePool(self.model_path, influence, cfg.round.system_prompt, cfg.rollout.temperature)
                          if influence.enabled else None)
        self.learner = LearnerGroup(self.model_path, cfg.learner, cfg.rollout.temperature, cfg.round.step_timeout_s)
        self.roles = [role for role in (self.rollout, self.rewards, self.influence, self.learner) if role is not None]

    def _pool_items(self) -> list[PromptItem]:
        """The run's prompt pool: a built pool (`data.pool`, checked against its manifest) or synthetic items."""
        data = self.config.data
        if data.pool is None:
            return generate_pool(data.domains, data.num_items, data.image_size, data.seed, data.difficulty,
                                 data.corrupt_fraction)
        try:
            items = load_pool(data.pool)
        except (OSError, ValueError) as error:
            raise ValueError(f"data.pool={data.pool!r}: {error}") from error
        self._emit("pool", path=data.pool, items=len(items))
        return items

    def _influence_targets(self) -> list[PromptItem]:
        """`target_per_domain` items per domain, fixed for the whole run and never trained on: carved out of the
        pool, fresh synthetic items, or drawn from a built target pool (`selection.influence.targets`)."""
        cfg = self.config
        source, count = cfg.selection.influence.targets, cfg.selection.influence.target_per_domain
        if source == "pool":
            return split_held_out(list(self.items.values()), count, cfg.round.seed + 1)[1]
        if source == "synthetic":
            data = cfg.data
            return distinct_synthetic(data.domains, count, data.image_size, data.seed + TARGET_SEED_OFFSET,
                                      data.difficulty, frozenset(held_out_hashes(self.held_out)))
        try:
            targets = sample_per_domain(load_pool(source), count, cfg.round.seed + 1)
        except (OSError, ValueError) as error:
            raise ValueError(f"selection.influence.targets={source!r}: {error}") from error
        self._emit("influence_targets", path=source, items=len(targets))
        return targets

    def _held_out_items(self) -> list[PromptItem]:
        """Evaluation items: fresh synthetic ones of distinct content (another seed; training items with the same
        content are removed from the pool, and the warm start never sees them), or `eval.items_per_domain` per
        domain carved out of a built pool."""
        data, evaluation = self.config.data, self.config.eval
        if not evaluation.enabled:
            return []
        if data.pool is not None:
            kept, held_out = split_held_out(list(self.items.values()), evaluation.items_per_domain, self.config.round.seed)
            self.items = {item.id: item for item in kept}
            return held_out
        held_out = synthetic_held_out(data.domains, evaluation.items_per_domain, data.image_size, data.seed,
                                      data.difficulty)
        seen = held_out_hashes(held_out)
        self.items = {i.id: i for i in self.items.values() if item_hash(i) not in seen}
        return held_out

    def _evaluate(self, label: str, items: list[PromptItem] | None = None, control: bool = False) -> None:
        """Held-out greedy accuracy and pass@k per domain (of `items`, default the held-out set), through the run's
        rollout and reward groups. A `control` result goes to the summary's `controls`, not the evaluations."""
        items = self.held_out if items is None else items
        if not items:
            return
        result = {"label": label, "round": self.round_index if label != "initial" else None,
                  "step": self.global_step, **evaluate(items, self.rollout, self.rewards, self.config)}
        if control:
            self.controls.append(result)
            self._emit("evaluation", control=True, **result)
            return
        self.evaluations.append(result)
        self.trackers.log({"eval/accuracy_mean": result["accuracy_mean"],
                           **{f"eval/accuracy_{d}": v for d, v in result["accuracy"].items()}}, self.global_step)
        self._emit("evaluation", **result)

    def _stop_roles(self) -> None:
        """Release the run's actors (and their CPUs/GPUs); the coordinator stays to answer `events`."""
        for group in self.roles:
            group.shutdown()

    def _select(self) -> list[str]:
        """The round's training items from the active pool: the difficulty band (when scored offline), then
        influence against the held-out targets; every item's fate goes into the round's lineage."""
        selection, timings, index = self.config.selection, {}, self.round_index
        candidates = [self.items[i] for i in self.active]
        self.lineage = {item.id: new_lineage(index, item) for item in [*candidates, *self.targets]}
        for target in self.targets:
            self.lineage[target.id]["influence"] = "target"
        if self.config.curriculum.replay_share:  # replayed items can train: their rows record it
            self.lineage.update({item_id: {**new_lineage(index, self.items[item_id]), "difficulty": "retired"}
                                 for item_id in self.retired})
        difficulty = {}
        if selection.offline_difficulty:
            with self._timed(timings, "difficulty"):
                rows = score_difficulty(candidates, self.rollout, self.rewards, self.config,
                                        DifficultyStore(self.round_dir / "difficulty"), index)
            difficulty = {row["id"]: row for row in rows}
            for row in rows:
                self.lineage[row["id"]].update(pass_rate=row["pass_rate"], difficulty=row["reason"])
            candidates = [item for item in candidates if self.lineage[item.id]["difficulty"] == "in_band"]
        in_band = len(candidates)
        if selection.influence.enabled:
            with self._timed(timings, "influence"):
                candidates = self._influence(candidates, difficulty)
        for item in candidates:
            self.lineage[item.id]["selected"] = True
        if not candidates:
            raise RuntimeError(f"round {index}: selection kept no item of {len(self.active)} (difficulty band and "
                               f"influence); see {self.round_dir}")
        self._emit("selection", round=index, pool=len(self.active), targets=len(self.targets), in_band=in_band,
                   kept=len(candidates), **timings)
        return [item.id for item in candidates]

    def _influence(self, candidates: list[PromptItem], difficulty: dict) -> list[PromptItem]:
        """Score candidates against the targets on the influence pool (or reuse earlier verdicts when
        `curriculum.rescore_influence` is off); keep per the configured rule."""
        config = self.config.selection.influence
        fresh = [item for item in candidates if self.config.curriculum.rescore_influence
                 or item.id not in self.influence_verdicts]
        if fresh:
            samples = {i: {"responses": row["responses"], "rewards": row["rewards"]} for i, row in difficulty.items()}
            scores, metrics = self.influence.score(fresh, self.targets, self.config.round.step_timeout_s,
                                                   self.learner.async_export_weights() if self.round_index else None,
                                                   samples if config.loss == "policy_gradient" else None)
            decisions = keep_decisions(scores, [item.domain for item in fresh], config.keep, config.threshold,
                                       config.top_fraction)
            self.influence_verdicts.update({item.id: (float(score), reason)
                                            for item, score, (_, reason) in zip(fresh, scores, decisions)})
            self._emit("influence", round=self.round_index, **metrics)
        for item in candidates:
            score, reason = self.influence_verdicts[item.id]
            self.lineage[item.id].update(influence_score=score, influence=reason)
        return [item for item in candidates if self.influence_verdicts[item.id][1] == "kept"]

    def _sample(self, sampler: CurriculumSampler, timings: dict) -> SampledStep:
        """Generate and score one step's groups: plainly, or by dynamic sampling (then some groups do not train)."""
        cfg = self.config
        draw = lambda count: [self.items[i] for i in sampler.next_batch(count)]  # noqa: E731
        if cfg.selection.dynamic_sampling:
            return dynamic_sample(draw, self.rollout, self.rewards, cfg, timings)
        shard_refs, scores = generate_and_score(self.rollout, self.rewards, draw(cfg.round.prompts_per_step), cfg,
                                                timings=timings)
        return SampledStep(shard_refs, scores, [True] * len(scores), 1)

    def _step(self, step: int, sampler: CurriculumSampler) -> dict:
        cfg, timings = self.config, {}
        deadline = cfg.round.step_timeout_s
        sampled = self._sample(sampler, timings)
        trained = [s for s, keep in zip(sampled.scores, sampled.keep) if keep]
        self._check_staleness(trained)
        advantages = grpo_advantages([s.rewards for s in sampled.scores], [s.excluded for s in sampled.scores],
                                     scale_by_std=cfg.learner.advantage_std_scale)
        advantages = [row if keep else [None] * len(row) for row, keep in zip(advantages, sampled.keep)]
        for score in trained:
            self.lineage[score.prompt_id]["trained"] = True
        sampler.observe([score.prompt_id for score in trained])
        with self._timed(timings, "train"):
            train_metrics = get_within(self.learner.async_train_step(step, advantages, sampled.shard_refs),
                                       deadline, f"learner step {step}")[0]
        if train_metrics["train/version"] != self.policy_version:  # a step with no mixed group changes nothing
            with self._timed(timings, "weight_sync"):
                versions = self.rollout.update_weights(self.learner.async_export_weights(), deadline)
            self.policy_version = min(versions)
        dynamic = dynamic_metrics(sampled) if cfg.selection.dynamic_sampling else {}
        metrics = {"step": step, "round": self.round_index, **_reward_metrics(trained), **dynamic, **train_metrics, **timings,
                   **_domain_accuracy(sampled.scores, self.items),
                   **self.rollout.metrics(), "rollout/weight_version": self.policy_version,
                   "time/step_s": sum(timings.values())}
        return metrics

    def _commit_step(self, metrics: dict) -> None:
        """Persist a step (run store first, then metrics.jsonl and trackers) and publish it."""
        self._emit("step", **metrics)
        self.history.append(metrics)
        with self.metrics_path.open("a") as sink:
            sink.write(json.dumps(metrics) + "\n")
        self.trackers.log(metrics, metrics["step"])

    def _write_lineage(self, final: bool = True) -> None:
        """The round manifest (every item's fate); when `final`, also the per-domain funnel, as a file and event."""
        rows = list(self.lineage.values())
        path = write_round_manifest(rows, self.round_dir / "manifest.parquet")
        if not final:
            return
        stages = funnel(rows)
        (self.round_dir / "funnel.json").write_text(json.dumps(stages, indent=2) + "\n")
        self._emit("round_manifest", round=self.round_index, path=str(path), funnel=stages)

    def _check_staleness(self, scores: list[GroupScores]) -> None:
        """Refuse to train on samples older than `rollout.max_staleness` versions (0 = strictly on-policy)."""
        staleness = self.policy_version - min(s.weight_version for s in scores)
        if staleness > self.config.rollout.max_staleness:
            raise RuntimeError(f"samples are {staleness} weight versions behind the learner (version "
                               f"{self.policy_version}); rollout.max_staleness={self.config.rollout.max_staleness}")

    def _checkpoint_due(self, local_step: int) -> bool:
        """Periodic checkpoints inside a round; the round's last step is saved in its checkpointing phase."""
        every = self.config.round.checkpoint_every
        return every > 0 and (local_step + 1) % every == 0

    def _save_resumable(self, sampler: CurriculumSampler, selected: list[str], round_start: int,
                        last_metrics: dict | None = None) -> str:
        """Learner state plus this coordinator's data cursor (round, pool, selection, sampler, the step's metrics),
        so a restarted coordinator continues with the same prompts."""
        cursor = {"steps_done": self.global_step, "round": self.round_index, "round_start_step": round_start,
                  "policy_version": self.policy_version, "active": self.active, "retired": self.retired,
                  "selected": selected, "sampler": sampler.state_dict(), "last_metrics": last_metrics}
        path = self.learner.save_checkpoint(str(self.run_dir / "checkpoints"), self.global_step, cursor,
                                            self.config.round.step_timeout_s)
        self._emit("checkpoint", path=path, steps_done=self.global_step, round=self.round_index)
        return path

    def _checkpoint(self) -> str:
        self._emit("phase", phase="checkpoint")
        return self.learner.save(str(self.run_dir / "checkpoint"), self.config.round.step_timeout_s)


def _reward_metrics(scores: list[GroupScores]) -> dict[str, float]:
    rewards = np.array([s.rewards for s in scores])
    accuracies = np.array([s.accuracies for s in scores])
    reasons = [r for s in scores for r in s.reasons]
    mixed = [0 < row.mean() < 1 for row in accuracies]
    metrics = {"reward/mean": float(rewards.mean()), "reward/accuracy": float(accuracies.mean()),
               "reward/excluded": sum(sum(s.excluded) for s in scores),
               "reward/mixed_group_fraction": float(np.mean(mixed)), "rollout/samples": len(reasons),
               "rollout/sample_version": min(s.weight_version for s in scores)}
    for reason in sorted(set(reasons)):
        metrics[f"reward/reason_{reason}"] = reasons.count(reason) / len(reasons)
    return metrics


def _domain_accuracy(scores: list[GroupScores], items: dict[str, PromptItem]) -> dict[str, float]:
    """Sampled accuracy per domain over every group generated in the step (kept or not): which domains RL moves."""
    by_domain = per_domain([(items[s.prompt_id].domain, float(np.mean(s.accuracies))) for s in scores])
    return {f"reward/accuracy_{domain}": value for domain, value in by_domain.items()}


def _with_overrides(config: RunConfig, overrides: dict) -> RunConfig:
    """The config with a round's dotted overrides applied (values as JSON, which YAML reads)."""
    if not overrides:
        return config
    return load_config_tree(config.model_dump(mode="json"), [f"{k}={json.dumps(v)}" for k, v in overrides.items()])


def new_run_id(name: str) -> str:
    return f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def absolute_paths(config: RunConfig) -> RunConfig:
    """Pin relative paths to the caller's working directory: Ray workers run elsewhere."""
    update = {"output_dir": str(Path(config.output_dir).resolve())}
    if config.store is not None and "://" not in config.store:  # an SQLite file path, not a URL
        update["store"] = str(Path(config.store).resolve())
    model = config.model.model_copy(update={"cache_dir": str(Path(config.model.cache_dir).resolve())})
    return config.model_copy(update={**update, "model": model})


def start_run(config: RunConfig, detached: bool = False):
    """Create the run's coordinator actor (named by the run id) and start its round; returns (id, handle, ref)."""
    config = absolute_paths(config)
    run_id = new_run_id(config.name)
    run_dir = Path(config.output_dir) / run_id
    # A coordinator whose process dies is restarted once and its `run` retried: it resumes from its checkpoint.
    options = {"name": run_id, "lifetime": "detached" if detached else None, "max_restarts": 1, "max_task_retries": 1}
    coordinator = Coordinator.options(**options).remote(run_id, config, str(run_dir))
    return run_id, coordinator, coordinator.run.remote()
