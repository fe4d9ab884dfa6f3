"""The demo's and `visiong1 ablate`'s printed tables, from summaries shaped like the coordinator's."""

from rich.console import Console

from actors.demo import ABLATIONS, ablation_table, evaluation_table


def evaluation(label: str, gui: float, science: float) -> dict:
    return {"label": label, "accuracy": {"gui": gui, "science": science}, "accuracy_mean": (gui + science) / 2}


def render(table) -> str:
    console = Console(width=200, record=True)
    console.print(table)
    return console.export_text()


def row(text: str, first: str) -> list[str]:
    """The cells of the table row whose first cell is `first`."""
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.replace("┃", "│").strip("│ ").split("│")]  # header rows use ┃
        if cells[0] == first:
            return cells[1:]
    raise AssertionError(f"no row {first!r} in\n{text}")


def test_ablation_table_puts_each_variant_beside_the_start():
    summaries = {name: {"evaluations": [evaluation("initial", 0.1, 0.2), evaluation("round_2", 0.1 + i / 10, 0.5)]}
                 for i, name in enumerate(ABLATIONS)}
    text = render(ablation_table(summaries))
    assert all(name in text for name in ABLATIONS)
    assert row(text, "gui") == ["0.100", "0.100", "0.200", "0.300", "0.400"]
    assert row(text, "mean")[-1] == "0.450"  # one_round: (0.4 + 0.5) / 2


def test_evaluation_table_has_one_column_per_evaluation():
    text = render(evaluation_table([evaluation("initial", 0.0, 1.0), evaluation("round_0", 0.5, 1.0)]))
    assert row(text, "science") == ["1.000", "1.000"] and row(text, "domain") == ["initial", "round_0"]
