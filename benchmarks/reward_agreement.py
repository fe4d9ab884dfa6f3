"""Agreement of the rule-based scorers with a careful grader's labels, per answer type and per group of the
labelled set (`tests/data/reward_pairs.jsonl`; the `ground_truth_forms` group holds ground truths as datasets
write them: LaTeX wrappers, percent words, units, `\\text{(B)}` choices, ordered and free multi-answers).

Run: python -m benchmarks.reward_agreement
Writes benchmarks/results/reward_agreement.json.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from rich.console import Console
from rich.table import Table

from benchmarks.common import write_result
from visiong1.rewards import score

PAIRS = Path(__file__).resolve().parents[1] / "tests" / "data" / "reward_pairs.jsonl"


def agreement(pairs: list[dict]) -> dict[str, dict]:
    """{answer type or `group:<name>` or `all`: {pairs, agree, share}}; disagreements listed per type."""
    tallies: dict[str, list[bool]] = defaultdict(list)
    misses = []
    for pair in pairs:
        verdict = score(rf"\boxed{{{pair['answer']}}}", pair["truth"], pair["type"], **pair["meta"]).accuracy == 1.0
        agrees = verdict == pair["equivalent"]
        for key in ("all", pair["type"], f"group:{pair.get('group', 'answer_forms')}"):
            tallies[key].append(agrees)
        if not agrees:
            misses.append(pair)
    figures = {key: {"pairs": len(v), "agree": sum(v), "share": round(sum(v) / len(v), 4)}
               for key, v in sorted(tallies.items())}
    return {"agreement": figures, "disagreements": misses}


def main() -> None:
    pairs = [json.loads(line) for line in PAIRS.read_text().splitlines()]
    result = agreement(pairs)
    table = Table(title="scorer agreement with the labels")
    for column in ("answer type / group", "pairs", "agree", "share"):
        table.add_column(column)
    for key, figures in result["agreement"].items():
        table.add_row(key, str(figures["pairs"]), str(figures["agree"]), f"{figures['share']:.3f}")
    Console().print(table)
    print(write_result("reward_agreement", result, {"pairs": str(PAIRS.relative_to(PAIRS.parents[2]))}))


if __name__ == "__main__":
    main()
