"""Influence role. STUB until the selection issue: scores every item 0 and keeps all, and says so."""

from __future__ import annotations

import ray

STUB_NOTICE = "influence pool is a stub (selection issue): every item scored 0.0, all kept"


@ray.remote(num_cpus=0)
class InfluenceWorker:
    def score(self, item_ids: list[str]) -> dict:
        """Returns per-item scores, the kept ids, and metrics that mark the result as a stub."""
        return {"scores": [0.0] * len(item_ids), "kept": list(item_ids), "notice": STUB_NOTICE,
                "metrics": {"influence/stub": 1.0, "influence/scored": len(item_ids), "influence/dropped": 0}}


class InfluencePool:
    def __init__(self):
        self.worker = InfluenceWorker.remote()

    def shutdown(self) -> None:
        ray.kill(self.worker)

    def async_score(self, item_ids: list[str]) -> ray.ObjectRef:
        return self.worker.score.remote(item_ids)
