"""A run's controls as the run store holds them: cancel requests, rounds started over REST, and the round's state,
which only moves forward (a resumed round may already be where it is asked to go)."""

from __future__ import annotations

import threading
import time

from visiong1.config import RoundConfig, RunConfig
from visiong1.store import PHASE_ORDER, Round, RoundState, Run, RunCancelled, RunNotFound, RunStore


class RunControl:
    def __init__(self, store: RunStore, run_id: str):
        self.store, self.run_id = store, run_id

    def register(self, config: RunConfig) -> bool:
        """Create the run in the store with its `config`; False when it is new, True when it was there already
        (the coordinator restarted or was replaced: a resume)."""
        try:
            self.store.get_run(self.run_id)
            return True
        except RunNotFound:
            self.store.create_run(self.run_id, config.model_dump(mode="json"))
            return False

    def check_cancel(self) -> Run:
        """The run's row; a cancel request for the run or the round in progress ends the round `cancelled` and
        raises RunCancelled."""
        run = self.store.get_run(self.run_id)
        active = self.store.active_round(self.run_id)
        if run.cancel_requested or (active is not None and active.cancel_requested):
            if active is not None:
                self.store.transition_round(self.run_id, active.index, RoundState.CANCELLED)
            raise RunCancelled(f"cancel requested for {'the run' if run.cancel_requested else f'round {active.index}'}")
        return run

    def next_round(self, configured: RoundConfig) -> Round | None:
        """The round to run: the active one or a failed one (both resume), else a new round while the configured
        `rounds` are not all done, else one started over REST (None once `idle_timeout_s` passed without one)."""
        rounds = self.store.list_rounds(self.run_id)
        if rounds and (rounds[-1].active or rounds[-1].state is RoundState.FAILED):
            return rounds[-1]
        if sum(stored.state is RoundState.DONE for stored in rounds) < configured.rounds:
            return self.store.start_round(self.run_id)
        return self.wait_for_round(configured.idle_timeout_s)

    def wait_for_round(self, idle_timeout_s: float) -> Round | None:
        """A round started over REST (pending in the store), waiting up to `idle_timeout_s` for one; a round
        requested in the instant the wait ended is cancelled rather than left pending forever."""
        deadline = time.monotonic() + idle_timeout_s
        while True:
            self.check_cancel()
            pending = self.store.active_round(self.run_id)
            if pending is not None:
                return pending
            if time.monotonic() >= deadline:
                late = self.store.active_round(self.run_id)
                if late is not None and late.state is RoundState.PENDING:
                    self.store.transition_round(self.run_id, late.index, RoundState.CANCELLED)
                return None
            time.sleep(0.5)

    def advance(self, round_index: int, state: RoundState) -> None:
        """Commit the round's new state unless it is already there or beyond (the store writes the `round_state`
        event in the same transaction); a failed round resumes into any state."""
        current = self.store.get_round(self.run_id, round_index).state
        position = PHASE_ORDER.index(current) if current in PHASE_ORDER else -1
        if position < PHASE_ORDER.index(state):
            self.store.transition_round(self.run_id, round_index, state)

    def fail_active(self, message: str) -> None:
        """Fail the round in progress, if any (it stays resumable)."""
        active = self.store.active_round(self.run_id)
        if active is not None:
            self.store.transition_round(self.run_id, active.index, RoundState.FAILED, error=message)


def apply_counts(run: Run, rollout, rewards, influence) -> None:
    """The counts set over REST (`run`'s row) applied to the role groups; learners are never resized, and a run
    without an influence pool (`influence` None) skips it."""
    rollout.reconcile(run.rollout_replicas)  # it also replaces replicas that fail their health probe
    rewards.reconcile(run.reward_workers)
    if influence is not None:
        influence.reconcile(run.influence_workers)


class Heartbeat:
    """A thread that records the coordinator alive in the store every `min(5, watchdog_s / 10)` seconds from its
    start until the `with` block it guards ends (the API's watchdog fails runs whose heartbeat is older than
    `round.watchdog_s`)."""

    def __init__(self, store: RunStore, run_id: str, watchdog_s: float):
        self.store, self.run_id, self.every_s = store, run_id, min(5.0, watchdog_s / 10)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat {run_id}", daemon=True)
        self._thread.start()

    def __enter__(self) -> Heartbeat:
        return self

    def __exit__(self, *exc_info) -> None:
        self._stopped.set()
        self._thread.join()

    def _beat(self) -> None:
        while True:
            self.store.heartbeat(self.run_id)
            if self._stopped.wait(self.every_s):
                return
