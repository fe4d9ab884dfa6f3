"""Public benchmarks' official scoring rules, reproduced (quirks included) as reward scorers, so training and
evaluation share one code path. The answer type of a benchmark item is its key here.

Contract of every scorer: `(response, ground_truth, **meta) -> RewardResult`. It receives the whole response (the
official rules extract the answer themselves); where the response has a `\\boxed{}`, the official rule is applied
to the last box's content (the project's prompt asks for one; the official pipelines predate it). It never raises
for anything in `response`, and raises GroundTruthError for a ground truth its rule cannot use.
"""

from __future__ import annotations

from visiong1.rewards.official.chartqa import score_chartqa
from visiong1.rewards.official.mathverse import score_mathverse
from visiong1.rewards.official.mathvision import score_mathvision
from visiong1.rewards.official.mathvista import score_mathvista
from visiong1.rewards.official.mmmu import score_mmmu
from visiong1.rewards.official.multiple_choice import score_ai2d, score_mmstar, score_scienceqa

OFFICIAL_SCORERS = {"mathvista": score_mathvista, "mathverse": score_mathverse, "mathvision": score_mathvision,
                    "chartqa": score_chartqa, "mmmu": score_mmmu, "mmmu_pro": score_mmmu, "mmstar": score_mmstar,
                    "ai2d": score_ai2d, "scienceqa": score_scienceqa}
