"""Coordinator role: one actor per run that drives its rounds and records every event.

A round reads as the method: select (difficulty band, influence) -> train (per step: sample -> generate -> score
with dynamic sampling -> advantages -> train -> sync weights) -> curriculum -> evaluate -> checkpoint. Each phase is
one `with self._phase(...)` that names it, moves the store's round state and times it; the data and its selection
live in the RoundSelector. No torch here: the control plane imports this module to start runs.
"""

from __future__ import annotations

import itertools
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

import ray

from actors.common import get_within
from actors.influence import InfluencePool
from actors.learner import LearnerGroup, prepare_model
from actors.pipeline import StepSource, pipeline_metrics
from actors.reward import RewardPool
from actors.rollout import RolloutGroup
from actors.round_selector import RoundSelector
from actors.run_control import Heartbeat, RunControl, apply_counts
from actors.run_log import RunLog
from actors.weight_sync import weight_sync_for
from actors.selection import (check_trainable, domain_accuracy, dynamic_metrics, evaluate, reward_metrics,
                              sample_step, timed)
from visiong1.config import RunConfig, with_overrides, write_resolved
from visiong1.eval.heldout import blank_images
from visiong1.selection.curriculum import CurriculumSampler
from visiong1.store import DEFAULT_FILENAME, Round, RoundState, RunCancelled, RunStore
from visiong1.store.events import EventKind
from visiong1.training.checkpoint import CheckpointStore, run_checkpoints
from visiong1.types import RoundCursor


@ray.remote(num_cpus=0, max_concurrency=8)
class Coordinator:
    """`run()` blocks for the whole run (call it without waiting); `events(after)` may be polled meanwhile."""

    def __init__(self, run_id: str, config: RunConfig, run_dir: str):
        self.run_id, self.config = run_id, config
        self.base_config = config  # the run's config; `config` is the round in progress's (with its overrides)
        self.run_dir = Path(run_dir)
        self.checkpoints = run_checkpoints(config.learner.checkpoint_uri, run_id, run_dir)
        self.store = RunStore.open(config.store or Path(config.output_dir) / DEFAULT_FILENAME)
        self.log = RunLog(run_id, self.store, self.run_dir)
        self.control = RunControl(self.store, run_id)
        self._fresh_state()

    def _fresh_state(self) -> None:
        """Where a run stands before its roles start (again, for a retry); a resume then restores from the store."""
        self.config, self.round_index, self.global_step = self.base_config, 0, 0
        self.policy_version = 0  # the learner's newest weight version, as last pushed to rollout
        self.selector = RoundSelector(self.base_config, self.run_dir, self.log.emit)
        self.model_path, self.weight_sync = None, None  # the starting policy; the rollout.weight_sync transport
        self.rollout = self.rewards = self.influence = self.learner = None  # the role groups, from `_start_roles`

    def events(self, after: int = 0) -> list[dict]:
        """Events with sequence number >= `after`, in order."""
        return self.log.events(after)

    @contextmanager
    def _phase(self, name: str, state: RoundState | None = None):
        """A named phase: the round moves to `state` in the store, it is announced and its time summed."""
        if state is not None:
            self.control.advance(self.round_index, state)
        self.log.phase(name, self.round_index)
        started = time.perf_counter()
        yield
        self.log.phase_time(name, time.perf_counter() - started)

    def run(self) -> dict:
        """Run every round end to end; returns the summary (also the `run_finished` event and summary.json). A run
        already in the store (Ray restarted this actor, or `POST /v1/runs/{id}/resume` replaced it) resumes from its
        newest checkpoint that verifies; every failure ends in `run_failed` with its round `failed` (resumable)."""
        try:
            if not (resuming := self.control.register(self.config)):
                self.log.emit(EventKind.RUN_STARTED, run_dir=str(self.run_dir), rounds=self.config.round.rounds,
                              steps=self.config.round.steps)
            CheckpointStore(self.checkpoints).remove_stale()
            with Heartbeat(self.store, self.run_id, self.base_config.round.watchdog_s):
                summary = self._run_with_retries(resuming)
        except RunCancelled as cancelled:  # a request through the store, honoured at a step boundary
            self.log.emit(EventKind.RUN_CANCELLED, reason=str(cancelled))
            self.log.emit(EventKind.RUN_FINISHED, cancelled=str(cancelled), steps=self.global_step)
            return {"cancelled": str(cancelled)}
        except BaseException as error:
            self._fail(error)
            raise
        finally:
            self._stop_roles()
        self.log.emit(EventKind.RUN_FINISHED, **summary)
        return summary

    def _run_with_retries(self, resuming: bool) -> dict:
        """`_run`, retried from the newest checkpoint (roles restarted) after an actor's failure or a deadline, up
        to `round.max_retries` times with doubling backoff; errors of the coordinator's own code are not retried."""
        retry = self.base_config.round
        for attempt in itertools.count(1):
            try:
                return self._run(resuming)
            except (ray.exceptions.RayError, TimeoutError) as error:
                if attempt > retry.max_retries:
                    raise
                backoff = retry.retry_backoff_s * 2 ** (attempt - 1)
                self.log.emit(EventKind.RUN_RETRYING, attempt=attempt, error=f"{type(error).__name__}: {error}",
                              backoff_s=backoff)
            self._stop_roles()
            self._fresh_state()
            time.sleep(backoff)
            resuming = True

    def _run(self, resuming: bool) -> dict:
        """Start the roles, run the configured rounds and those started over REST, then the controls, the final
        checkpoint and the summary."""
        write_resolved(self.config, self.run_dir)
        self.log.open_trackers(self.config)
        self._start_roles()
        cursor = self._restore() if resuming else None
        if not any(evaluation["label"] == "initial" for evaluation in self.log.evaluations):
            with self._phase("evaluate"):
                self._evaluate("initial")
        while (stored := self.control.next_round(self.base_config.round)) is not None:
            self._round(stored, cursor if cursor and cursor.round == stored.index else None)
            cursor = None
        if self.config.eval.blank_image_control:
            with self._phase("evaluate"):
                self._evaluate("blank_images", blank_images(self.selector.held_out_items()), control=True)
        with self._phase("checkpoint"):
            checkpoint = self.learner.save(str(self.run_dir / "checkpoint"), self.config.round.step_timeout_s)
        return self.log.summary(checkpoint, self.config.round.rounds)

    def _fail(self, error: BaseException) -> None:
        """Publish `run_failed` and fail the round in progress (resumable); the event goes out even when failing
        the round raises."""
        message = f"{type(error).__name__}: {error}"
        try:
            self.control.fail_active(message)
        finally:
            self.log.emit(EventKind.RUN_FAILED, error=message, traceback=traceback.format_exc())

    def _restore(self) -> RoundCursor | None:
        """Learner, data cursor and rollout weights from the newest checkpoint that verifies (None: there is none,
        the first round is redone from the start). Steps committed after it are superseded: they are redone."""
        timeout, path, cursor = self.config.round.step_timeout_s, None, None
        if CheckpointStore(self.checkpoints).latest() is not None:
            path, extra = self.learner.restore_newest(self.checkpoints, timeout, lambda refused, error: self.log.emit(
                EventKind.CHECKPOINT_REFUSED, path=refused, error=str(error)))
            cursor = RoundCursor.from_json(extra)
            self.global_step, self.log.store_round = cursor.steps_done, cursor.round
            self.selector.restore(cursor)
            self.policy_version = min(self.weight_sync.push(cursor.policy_version, timeout))
        self.store.supersede_steps(self.run_id, self.global_step)
        if cursor and cursor.last_metrics and self.store.last_committed_step(self.run_id, cursor.round) != \
                self.global_step - 1:
            self.log.commit_step(cursor.last_metrics)  # saved, then the actor died before committing it
        self.log.reload()
        self.log.emit(EventKind.RUN_RESUMED, checkpoint=path, steps_done=self.global_step,
                      round=cursor.round if cursor else None)
        return cursor

    def _round(self, stored: Round, cursor: RoundCursor | None = None) -> None:
        """One round: select from the current pool, train, carry the curriculum over, evaluate, checkpoint; the round's
        overrides (`round.steps`, `round.prompts_per_step`, `selection.*`) apply to it alone. A resume `cursor` from
        inside its training skips selection and continues after the checkpointed step; a restart without one reuses
        the written selection (when it got that far) and trains from the first step."""
        self._begin_round(stored)
        if cursor is not None and cursor.round_complete:  # saved by the checkpoint phase: only `done` is missing
            self.control.advance(self.round_index, RoundState.DONE)
            return
        if cursor is None:
            if (selected := self.selector.written_selection()) is None:
                scoring = RoundState.SCORING if self.config.selection.offline_difficulty else RoundState.SELECTING
                with self._phase("select", scoring):
                    selected = self.selector.select(self.rollout, self.rewards, self.influence,
                                                    self.weight_sync.load_into)
            self._reset_reference()
            sampler, first_step = self.selector.sampler(selected), 0
        else:
            self.selector.resume_round()
            sampler = self.selector.sampler(cursor.selected, cursor.sampler)
            selected, first_step = cursor.selected, self.global_step - cursor.round_start_step
        with self._phase("train", RoundState.TRAINING):
            self._train(sampler, selected, first_step)
        with self._phase("curriculum", RoundState.EVALUATING):
            self.log.emit(EventKind.CURRICULUM, **self.selector.carry_over(sampler))
        with self._phase("evaluate", RoundState.EVALUATING):
            self._evaluate(f"round_{self.round_index}")
        with self._phase("checkpoint", RoundState.CHECKPOINTING):
            self._save_resumable(sampler.state_dict(), selected, self.global_step, round_complete=True)
        self.control.advance(self.round_index, RoundState.DONE)

    def _begin_round(self, stored: Round) -> None:
        index = stored.index
        self.config = with_overrides(self.base_config, stored.overrides)
        self.round_index = self.log.store_round = index
        self.selector.begin_round(index, self.config, self.run_dir / "rounds" / f"{index:03d}")
        self.log.emit(EventKind.ROUND_STARTED, round=index, pool=len(self.selector.active), overrides=stored.overrides)
        self._between_steps()

    def _reset_reference(self) -> None:
        """From round 1 on, with `learner.kl_reference: round`, the KL anchors to the policy the round starts from."""
        if self.round_index and self.config.learner.kl_coef and self.config.learner.kl_reference == "round":
            self.learner.reset_reference(self.config.round.step_timeout_s)

    def _train(self, sampler: CurriculumSampler, selected: list[str], first_step: int) -> None:
        """The round's steps from `first_step`, sampled up to `rollout.max_staleness` steps ahead (actors.pipeline);
        a due checkpoint is saved before its step commits: a committed step is never lost to a restart nor redone."""
        round_start, every = self.global_step - first_step, self.config.round.checkpoint_every
        produce = lambda draw, timings: sample_step(draw, self.rollout, self.rewards, self.config, timings)  # noqa: E731
        steps = range(self.global_step, round_start + self.config.round.steps)
        with StepSource(produce, self.selector, sampler, steps, self.config.rollout.max_staleness) as source:
            for local_step in range(first_step, self.config.round.steps):
                self._between_steps()
                metrics = self._step(self.global_step, source)
                self.global_step += 1
                if every > 0 and (local_step + 1) % every == 0:  # the round's last step: its checkpoint phase
                    self._save_resumable(source.checkpoint_state(self.global_step), selected, round_start, metrics)
                self.log.commit_step(metrics)

    def _between_steps(self) -> None:
        """Step boundary (and a round's start): honour cancel requests; apply the counts set over REST."""
        apply_counts(self.control.check_cancel(), self.rollout, self.rewards, self.influence)

    def _step(self, step: int, source: StepSource) -> dict:
        """Take the step's samples, compute advantages, train on the kept groups and push the new weights; returns
        the metrics."""
        cfg, started = self.config, time.perf_counter()
        sampled, timings = (produced := source.take(step)).sampled, produced.timings
        self.log.schedule_samples(step, sampled.ledger_plan())
        check_trainable(trained := sampled.trained(), self.policy_version, cfg)
        source.observe([score.prompt_id for score in trained])
        version_sampled_for, training = self.policy_version, time.perf_counter()
        with timed(timings, "train"):
            advantages = sampled.advantages(cfg.learner.advantage_std_scale)
            train_metrics = get_within(self.learner.async_train_step(step, advantages, sampled.shard_refs),
                                       cfg.round.step_timeout_s, f"learner step {step}")[0]
        if (version := train_metrics["train/version"]) != self.policy_version:  # no mixed group: nothing changed
            with timed(timings, "weight_sync"):
                self.policy_version = min(self.weight_sync.push(version, cfg.round.step_timeout_s))
        source.pushed(step)
        return {"step": step, "round": self.round_index, **reward_metrics(trained), **train_metrics, **timings,
                **(dynamic_metrics(sampled) if cfg.selection.dynamic_sampling else {}), **self.rollout.metrics(),
                **domain_accuracy(sampled.scores, self.selector.domain), **self.weight_sync.metrics(),
                **pipeline_metrics(source, produced, version_sampled_for, training),
                "rollout/weight_version": self.policy_version, "time/step_s": time.perf_counter() - started}

    def _save_resumable(self, sampler_state: dict, selected: list[str], round_start: int,
                        last_metrics: dict | None = None, round_complete: bool = False) -> str:
        """Learner state plus the data cursor (`sampler_state`, the curriculum sampler's as of the next step's
        draw), so a restarted coordinator continues with the same prompts."""
        cursor = RoundCursor(steps_done=self.global_step, round=self.round_index, round_start_step=round_start,
                             policy_version=self.policy_version, active=self.selector.active,
                             retired=self.selector.retired, selected=selected, sampler=sampler_state,
                             last_metrics=last_metrics, round_complete=round_complete)
        path = self.learner.save_checkpoint(self.checkpoints, self.global_step, cursor.to_json(),
                                            self.config.round.step_timeout_s)
        self.log.emit(EventKind.CHECKPOINT, path=path, steps_done=self.global_step, round=self.round_index)
        return path

    def _evaluate(self, label: str, items: list | None = None, control: bool = False) -> None:
        """Held-out greedy accuracy and pass@k per domain (of `items`, default the held-out set), through the run's
        rollout and reward groups. A `control` result goes to the summary's `controls`, not the evaluations."""
        if not (items := self.selector.held_out_items() if items is None else items):
            return
        result = {"label": label, "round": self.round_index if label != "initial" else None,
                  "step": self.global_step, **evaluate(items, self.rollout, self.rewards, self.config, not control)}
        self.log.evaluation(result, control)

    def _start_roles(self) -> None:
        """The run's data, its starting model (the tiny model and its warm start unless cached), its actor groups."""
        cfg = self.config
        self.selector.prepare()
        with self._phase("prepare_model"):
            task = prepare_model.options(num_cpus=cfg.model.warm_start_cpus).remote(cfg)
            self.model_path = get_within(task, cfg.round.step_timeout_s, "model preparation task")
        with self._phase("start_actors"):
            self.rollout = RolloutGroup(self.model_path, cfg.rollout, cfg.round.system_prompt, cfg.round.seed,
                                        str(Path(cfg.model.cache_dir).parent / "engines"), self.log.emit)
            self.rewards = RewardPool(cfg.reward, self.log.emit)
            influence = cfg.selection.influence
            self.influence = (InfluencePool(self.model_path, influence, cfg.round.system_prompt,
                                            cfg.rollout.temperature, self.log.emit) if influence.enabled else None)
            self.learner = LearnerGroup(self.model_path, cfg.learner, cfg.rollout.temperature,
                                        cfg.round.step_timeout_s)
            self.weight_sync = weight_sync_for(cfg.rollout, self.learner, self.rollout, lambda pid: self.log.emit(
                EventKind.ROLLOUT_REPLICA_REPLACED, pid=pid, reason="dropped from a weight sync"))

    def _stop_roles(self) -> None:
        """Release the run's actors (and their CPUs/GPUs) and trackers; the coordinator stays to answer `events`."""
        for group in (self.rollout, self.rewards, self.influence, self.learner):
            if group is not None:
                group.shutdown()
        self.log.close()

