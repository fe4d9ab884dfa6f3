"""The kinds of event a run writes to the store and the payload keys each carries: the SSE stream's public contract.

`docs/events.md` is generated from this table (`python -m visiong1.store.events > docs/events.md`) and a test keeps
the two equal; another test checks that a real run's events carry the keys listed here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class EventKind(str, Enum):
    RUN_STARTED = "run_started"
    RUN_RESUMED = "run_resumed"
    POOL = "pool"
    INFLUENCE_TARGETS = "influence_targets"
    PHASE = "phase"
    ROUND_STARTED = "round_started"
    ROUND_STATE = "round_state"
    SELECTION = "selection"
    INFLUENCE = "influence"
    STEP = "step"
    STEPS_SUPERSEDED = "steps_superseded"
    ROLLOUT_REPLICA_REPLACED = "rollout_replica_replaced"
    ROLLOUT_SCALED = "rollout_scaled"
    REWARD_SCALED = "reward_scaled"
    INFLUENCE_SCALED = "influence_scaled"
    ROUND_MANIFEST = "round_manifest"
    CURRICULUM = "curriculum"
    EVALUATION = "evaluation"
    CHECKPOINT = "checkpoint"
    CHECKPOINT_REFUSED = "checkpoint_refused"
    RUN_RETRYING = "run_retrying"
    RUN_CANCELLED = "run_cancelled"
    RUN_FINISHED = "run_finished"
    RUN_FAILED = "run_failed"


TERMINAL_EVENTS = frozenset({EventKind.RUN_FINISHED.value, EventKind.RUN_FAILED.value})
"""The coordinator's last event: streams end on it and nobody serves rounds of the run after it."""


@dataclass(frozen=True)
class EventSpec:
    keys: tuple[str, ...]
    """Payload keys every event of the kind carries."""
    meaning: str
    more: str = ""
    """Keys some events of the kind also carry."""


EVENTS: dict[EventKind, EventSpec] = {
    EventKind.RUN_STARTED: EventSpec(("run_dir", "rounds", "steps"),
                                     "The run was created: its directory, configured rounds and steps per round."),
    EventKind.RUN_RESUMED: EventSpec(("checkpoint", "steps_done", "round"),
                                     "A restarted coordinator resumed from `checkpoint` inside `round`."),
    EventKind.POOL: EventSpec(("path", "items"), "A built pool (`data.pool`) was loaded and checked."),
    EventKind.INFLUENCE_TARGETS: EventSpec(("path", "items"),
                                           "Influence targets were drawn from a built pool at `path`."),
    EventKind.PHASE: EventSpec(("phase", "round"), "A phase began: `prepare_model`, `start_actors`, `select`, "
                               "`train`, `curriculum`, `evaluate` or `checkpoint`; `round` is null outside rounds."),
    EventKind.ROUND_STARTED: EventSpec(("round", "pool", "overrides"),
                                       "A round began with `pool` active items and its per-round overrides."),
    EventKind.ROUND_STATE: EventSpec(("round", "state", "previous", "error"),
                                     "The store committed a round state (`pending` ... `done`, `failed`, "
                                     "`cancelled`); `previous` is null at the round's start."),
    EventKind.SELECTION: EventSpec(("round", "pool", "targets", "in_band", "kept"),
                                   "The round's selection: active items, influence targets, items in the pass-rate "
                                   "band, items kept for training.", "`time/difficulty_s`, `time/influence_s`"),
    EventKind.INFLUENCE: EventSpec(("round",), "An influence scoring pass finished.",
                                   "`influence/*` metrics, `time/influence_pass_s`"),
    EventKind.STEP: EventSpec(("round", "step", "metrics"),
                              "A training step was committed; `metrics` holds `reward/*`, `train/*`, `time/*`, "
                              "`rollout/*` and, with dynamic sampling, `dynamic/*`."),
    EventKind.STEPS_SUPERSEDED: EventSpec(("from_step", "attempt", "steps", "samples"),
                                          "A restarted run redoes the steps from `from_step` (after its newest "
                                          "checkpoint): their committed rows (`steps`) and ledger samples "
                                          "(`samples`) of `attempt` were superseded; the redo commits them again."),
    EventKind.ROLLOUT_REPLICA_REPLACED: EventSpec(("pid", "reason"),
                                                  "A rollout replica failed its health probe and was replaced."),
    EventKind.ROLLOUT_SCALED: EventSpec(("replicas", "previous", "source", "reason", "serving"),
                                        "The rollout group's replica count (serving plus starting) was set: by its "
                                        "autoscale policy before a generation call (`source` `autoscale`), or to the "
                                        "count set over REST at a step boundary (`api`). It shrinks at once; new "
                                        "replicas start in the background and serve once loaded; `serving` counts "
                                        "those serving when the count was set.",
                                        "`prompts`: the call's load, for `autoscale`"),
    EventKind.REWARD_SCALED: EventSpec(("workers", "previous", "source"),
                                       "The reward pool was resized at a step boundary to the count set over REST "
                                       "(`source` `api`) or, once cleared, back to `reward.workers` (`config`)."),
    EventKind.INFLUENCE_SCALED: EventSpec(("workers", "previous", "source"),
                                          "The influence pool was resized outside a scoring pass (at a step "
                                          "boundary or a round's start) to the count set over REST (`source` "
                                          "`api`) or, once cleared, back to `selection.influence.workers` "
                                          "(`config`)."),
    EventKind.ROUND_MANIFEST: EventSpec(("round", "path", "funnel"),
                                        "The round's manifest (every item's fate) was written; `funnel` counts "
                                        "items per domain and stage."),
    EventKind.CURRICULUM: EventSpec(("round", "next_pool"),
                                    "Items were retired and the next round's pool fixed.",
                                    "`curriculum/*` counts and shares"),
    EventKind.EVALUATION: EventSpec(("label", "round", "step", "accuracy", "accuracy_mean", "items", "seconds"),
                                    "Held-out greedy accuracy per domain (`label` `initial`, `round_N`, or a "
                                    "control's name).", "`accuracy_by_template`, `pass_at_k`, `pass_at_k_mean`, "
                                    "`pass_k`, `control` (true for a control evaluation)"),
    EventKind.CHECKPOINT: EventSpec(("path", "steps_done", "round"), "A resumable checkpoint was committed."),
    EventKind.CHECKPOINT_REFUSED: EventSpec(("path", "error"), "On resume, the checkpoint at `path` failed "
                                            "verification; the previous complete one is loaded instead."),
    EventKind.RUN_RETRYING: EventSpec(("attempt", "error", "backoff_s"),
                                      "The run hit `error` and restarts its roles from its newest checkpoint after "
                                      "`backoff_s` (retry `attempt` of `round.max_retries`)."),
    EventKind.RUN_CANCELLED: EventSpec(("reason",), "A cancel request was honoured at a step boundary."),
    EventKind.RUN_FINISHED: EventSpec(("steps",), "The run ended (terminal).",
                                      "the run summary (`checkpoint`, `evaluations`, `controls`, `phase_seconds`, "
                                      "`report`, ...) or, for a cancelled run, `cancelled` (the reason)"),
    EventKind.RUN_FAILED: EventSpec(("error",), "The run failed (terminal; `POST /v1/runs/{id}/resume` restarts it "
                                    "from its newest checkpoint).", "`traceback`; `reason` `coordinator_lost` when "
                                    "the API's watchdog found the coordinator gone or its heartbeat stale"),
}


def missing_keys(kind: str, payload: dict) -> list[str]:
    """The documented keys of `kind` absent from `payload`; raises ValueError for an undocumented kind."""
    return [key for key in EVENTS[EventKind(kind)].keys if key not in payload]


def markdown() -> str:
    """The event reference page (`docs/events.md`)."""
    lines = ["# Run events", "",
             "Every event a run writes, as `GET /v1/runs/{id}/events` streams it (server-sent events: `event:` is "
             "the kind, `id:` the event's id in the run, `data:` JSON with `id`, `run_id`, `type`, `round`, `time` "
             "and `payload`). The stream ends after a terminal event. Generated from `visiong1/store/events.py`.",
             "", "| kind | payload keys | meaning | sometimes also |", "|---|---|---|---|"]
    for kind, spec in EVENTS.items():
        keys = ", ".join(f"`{key}`" for key in spec.keys)
        lines.append(f"| `{kind.value}` | {keys} | {spec.meaning} | {spec.more} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
