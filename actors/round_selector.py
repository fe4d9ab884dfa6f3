"""The run's data and its selection, round by round: the coordinator drives it, the actor groups do the work.

A RoundSelector owns the prompt pool as a PoolIndex (ids, domains, answers and row locators; the images stay in
Parquet under the run directory or the built pool), the held-out and influence-target sets, the active pool, the
items retired as too easy, each round's lineage and the influence verdicts carried between rounds. Roles read the
rows they need: a step's batch is read when it is drawn and leaves through the object store.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from actors.selection import score_difficulty, timed
from visiong1.config import RunConfig
from visiong1.data.pool import verify_pool
from visiong1.data.pool_index import ItemRow, PoolIndex, read_items, write_items
from visiong1.data.synthetic import iter_pool
from visiong1.eval.heldout import (TARGET_SEED_OFFSET, distinct_synthetic, sample_per_domain, split_held_out,
                                   synthetic_held_out)
from visiong1.selection.curriculum import CurriculumSampler, answer_strata, carry_over
from visiong1.selection.difficulty import DifficultyStore
from visiong1.selection.lineage import funnel, new_lineage, read_round_manifest, write_round_manifest
from visiong1.selection.scoring import InfluenceStore, keep_decisions
from visiong1.selection.verdicts import Difficulty, Influence
from visiong1.store.events import EventKind
from visiong1.types import PromptItem, RoundCursor


class RoundSelector:
    """The run's items and every round's selection. `emit(kind, **payload)` publishes the run's events."""

    def __init__(self, config: RunConfig, run_dir: Path, emit: Callable[..., dict]):
        self.config = config  # the round in progress's config (its overrides applied), set by `begin_round`
        self.data_dir = run_dir / "pool"  # items made for this run: synthetic pool, held-out set, targets
        self.emit = emit
        self.items = PoolIndex({})
        self.held_out = PoolIndex({})
        self.targets = PoolIndex({})
        self.active: list[str] = []
        self.retired: list[str] = []  # retired as too easy in earlier rounds: replayed with curriculum.replay_share
        self.lineage: dict[str, dict] = {}  # the round's manifest rows by item id
        self.influence_verdicts: dict[str, tuple[float, str]] = {}  # carried when curriculum.rescore_influence=False
        self.round_index, self.round_dir = 0, run_dir / "rounds" / "000"

    # --- the run's data ------------------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Pool, held-out set and influence targets. Sets made here are written under the run directory first and
        reused as they are by a restarted coordinator."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.items = self._pool()
        self.held_out = self._held_out()
        self.targets = self._influence_targets() if self.config.selection.influence.enabled else PoolIndex({})
        self.active = sorted(set(self.items) - set(self.targets))

    def restore(self, cursor: RoundCursor) -> None:
        self.active, self.retired = list(cursor.active), list(cursor.retired)

    def _written(self, name: str, make: Callable[[], list[PromptItem]]) -> PoolIndex:
        """The index of `<run>/pool/<name>.parquet`, written from `make()` unless an earlier start wrote it."""
        path = self.data_dir / f"{name}.parquet"
        if not path.exists():
            write_items(make(), path)
        return PoolIndex.open([path])

    def _pool(self) -> PoolIndex:
        """A built pool (`data.pool`, checked against its manifest) or the run's synthetic items."""
        data = self.config.data
        if data.pool is None:
            return self._written("items", lambda: iter_pool(data.domains, data.num_items, data.image_size,
                                                            data.seed, data.difficulty, data.corrupt_fraction))
        index = _open_built_pool(data.pool, "data.pool")
        self.emit(EventKind.POOL, path=data.pool, items=len(index))
        return index

    def _held_out(self) -> PoolIndex:
        """Evaluation items: fresh synthetic ones of distinct content (another seed; pool items with the same
        content leave the pool), or `eval.items_per_domain` per domain carved out of a built pool."""
        data, evaluation = self.config.data, self.config.eval
        if not evaluation.enabled:
            return PoolIndex({})
        if data.pool is not None:
            kept, held_out = split_held_out(self.items.values(), evaluation.items_per_domain, self.config.round.seed)
            self.items = self.items.subset(row.id for row in kept)
            return _index_of(held_out)
        held_out = self._written("held_out", lambda: synthetic_held_out(
            data.domains, evaluation.items_per_domain, data.image_size, data.seed, data.difficulty))
        seen = {row.content_hash for row in held_out.values()}
        self.items = self.items.subset(row.id for row in self.items.values() if row.content_hash not in seen)
        return held_out

    def _influence_targets(self) -> PoolIndex:
        """`target_per_domain` items per domain, fixed for the whole run and never trained on: carved out of the
        pool, fresh synthetic items, or drawn from a built target pool (`selection.influence.targets`)."""
        cfg = self.config
        source, count = cfg.selection.influence.targets, cfg.selection.influence.target_per_domain
        if source == "pool":
            return _index_of(split_held_out(self.items.values(), count, cfg.round.seed + 1)[1])
        if source == "synthetic":
            data = cfg.data
            exclude = frozenset(row.content_hash for row in self.held_out.values())
            return self._written("targets", lambda: distinct_synthetic(
                data.domains, count, data.image_size, data.seed + TARGET_SEED_OFFSET, data.difficulty, exclude))
        built = _open_built_pool(source, "selection.influence.targets")
        targets = _index_of(sample_per_domain(built.values(), count, cfg.round.seed + 1))
        self.emit(EventKind.INFLUENCE_TARGETS, path=source, items=len(targets))
        return targets

    # --- one round -----------------------------------------------------------------------------------------------
    def begin_round(self, index: int, config: RunConfig, round_dir: Path) -> None:
        self.round_index, self.config, self.round_dir = index, config, round_dir

    def select(self, rollout, rewards, influence, load_policy: Callable) -> list[str]:
        """The round's training items from the active pool: the difficulty band (when scored offline), then
        influence against the targets (`load_policy(actors)` loads the policy into them, after round 0); every item's
        fate goes into the round's lineage, written before this returns (a resumed round reads it back)."""
        selection, timings, index = self.config.selection, {}, self.round_index
        candidates = [self.items[i] for i in self.active]
        self._new_lineage(candidates)
        difficulty = {}
        if selection.offline_difficulty:
            with timed(timings, "difficulty"):
                rows = score_difficulty(candidates, rollout, rewards, self.config,
                                        DifficultyStore(self.round_dir / "difficulty"), index)
            difficulty = {row["id"]: row for row in rows}
            for row in rows:
                self.lineage[row["id"]].update(pass_rate=row["pass_rate"], difficulty=row["reason"])
            candidates = [row for row in candidates if self.lineage[row.id]["difficulty"] == Difficulty.IN_BAND]
        in_band = len(candidates)
        if selection.influence.enabled:
            with timed(timings, "influence"):
                candidates = self._influence(candidates, difficulty, influence, load_policy)
        for row in candidates:
            self.lineage[row.id]["selected"] = True
        self.write_lineage(final=False)
        if not candidates:
            raise RuntimeError(f"round {index}: selection kept no item of {len(self.active)} (difficulty band and "
                               f"influence); see {self.round_dir}")
        self.emit(EventKind.SELECTION, round=index, pool=len(self.active), targets=len(self.targets),
                  in_band=in_band, kept=len(candidates), **timings)
        return [row.id for row in candidates]

    def _new_lineage(self, candidates: list) -> None:
        """Rows for the candidates, the targets and (when the curriculum replays them) the retired items."""
        index = self.round_index
        self.lineage = {row.id: new_lineage(index, row) for row in [*candidates, *self.targets.values()]}
        for target in self.targets:
            self.lineage[target]["influence"] = Influence.TARGET
        if self.config.curriculum.replay_share:  # replayed items can train: their rows record it
            self.lineage.update({item_id: {**new_lineage(index, self.items[item_id]), "difficulty": Difficulty.RETIRED}
                                 for item_id in self.retired})

    def _influence(self, candidates: list, difficulty: dict, influence, load_policy: Callable) -> list:
        """Score candidates against the targets on the influence pool (or reuse earlier verdicts when
        `curriculum.rescore_influence` is off); keep per the configured rule."""
        config = self.config.selection.influence
        fresh = [row for row in candidates if self.config.curriculum.rescore_influence
                 or row.id not in self.influence_verdicts]
        if fresh:
            samples = {i: {"responses": row["responses"], "rewards": row["rewards"]} for i, row in difficulty.items()}
            scores, metrics = influence.score(fresh, self.targets.values(), self.config.round.step_timeout_s,
                                              load_policy if self.round_index else None,
                                              samples if config.loss == "policy_gradient" else None,
                                              InfluenceStore(self.round_dir / "influence"), self.round_index)
            decisions = keep_decisions(scores, [row.domain for row in fresh], config.keep, config.threshold,
                                       config.top_fraction)
            self.influence_verdicts.update({row.id: (float(score), reason)
                                            for row, score, (_, reason) in zip(fresh, scores, decisions)})
            self.emit(EventKind.INFLUENCE, round=self.round_index, **metrics)
        for row in candidates:
            score, reason = self.influence_verdicts[row.id]
            self.lineage[row.id].update(influence_score=score, influence=reason)
        return [row for row in candidates if self.influence_verdicts[row.id][1] == Influence.KEPT]

    def written_selection(self) -> list[str] | None:
        """The item ids this round selected before a restart (its lineage is read back), or None when the round had
        not written its selection yet."""
        if not (self.round_dir / "manifest.parquet").exists():
            return None
        self.resume_round()
        return [item_id for item_id, row in self.lineage.items() if row["selected"]]

    def resume_round(self) -> None:
        """The lineage of a round whose selection was written before a restart."""
        self.lineage = {row["id"]: row for row in read_round_manifest(self.round_dir / "manifest.parquet")}

    def sampler(self, selected: list[str], state: dict | None = None) -> CurriculumSampler:
        """The round's curriculum sampler over `selected` (and the replayable retired items), from `state`."""
        curriculum = self.config.curriculum
        strata = answer_strata(self.items[i] for i in selected) if curriculum.answer_balance else None
        sampler = CurriculumSampler({i: self.items[i].domain for i in selected}, curriculum.domain_weights,
                                    self.config.round.seed + self.round_index, curriculum.domain_mix,
                                    {i: self.items[i].domain for i in self.retired}, curriculum.replay_share, strata)
        if state:
            sampler.load_state_dict(state)
        return sampler

    def draw(self, sampler: CurriculumSampler, count: int) -> list[PromptItem]:
        """The sampler's next `count` items, read from storage."""
        return read_items([self.items[i] for i in sampler.next_batch(count)])

    def mark_trained(self, item_ids: list[str]) -> None:
        for item_id in item_ids:
            self.lineage[item_id]["trained"] = True

    def domain(self, item_id: str) -> str:
        return self.items[item_id].domain

    def carry_over(self, sampler: CurriculumSampler) -> dict:
        """Close the round: write its manifest and funnel, retire items per the curriculum; returns the
        `curriculum` event's payload."""
        self.write_lineage()
        self.active, retired_easy, retired = carry_over(list(self.lineage.values()), self.active,
                                                        self.config.curriculum)
        self.retired += retired_easy
        return {"round": self.round_index, "next_pool": len(self.active), **retired, **sampler.metrics()}

    def write_lineage(self, final: bool = True) -> None:
        """The round manifest (every item's fate); when `final`, also the per-domain funnel, as a file and event."""
        rows = list(self.lineage.values())
        path = write_round_manifest(rows, self.round_dir / "manifest.parquet")
        if not final:
            return
        stages = funnel(rows)
        (self.round_dir / "funnel.json").write_text(json.dumps(stages, indent=2) + "\n")
        self.emit(EventKind.ROUND_MANIFEST, round=self.round_index, path=str(path), funnel=stages)

    def held_out_items(self) -> list[PromptItem]:
        return read_items(self.held_out.values())


def _index_of(rows: list[ItemRow]) -> PoolIndex:
    return PoolIndex({row.id: row for row in rows})


def _open_built_pool(path: str, setting: str) -> PoolIndex:
    """The index of a built pool's files, checked against its manifest; errors name the setting."""
    try:
        manifest = verify_pool(path)
        return PoolIndex.open(Path(path) / entry["path"] for entry in manifest["files"])
    except (OSError, ValueError) as error:
        raise ValueError(f"{setting}={path!r}: {error}") from error
