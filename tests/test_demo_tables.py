"""The demo's and `visiong1 ablate`'s printed tables, from summaries shaped like the coordinator's."""

from rich.console import Console

from actors.demo import ABLATIONS, ablation_table, evaluation_table


def evaluation(label: str, gui: float, science: float) -> dict:
    return {"label": label, "accuracy": {"gui": gui, "science": science}, "accuracy_mean": (gui + science) / 2}


def render(table) -> str:
    console = Console(width=200, record=True)
    console.print(table)
    return console.export_text()


def test_ablation_table_puts_each_variant_beside_the_start():
    summaries = {name: {"evaluations": [evaluation("initial", 0.1, 0.2), evaluation("round_2", 0.1 + i / 10, 0.5)]}
                 for i, name in enumerate(ABLATIONS)}
    text = render(ablation_table(summaries))
    assert all(name in text for name in ABLATIONS)
    gui_row = next(line for line in text.splitlines() if line.strip().startswith("gui"))
    assert gui_row.split()[1:] == ["0.100", "0.100", "0.200", "0.300", "0.400"]
    assert "mean" in text and "0.450" in text  # one_round: (0.4 + 0.5) / 2


def test_evaluation_table_has_one_column_per_evaluation():
    text = render(evaluation_table([evaluation("initial", 0.0, 1.0), evaluation("round_0", 0.5, 1.0)]))
    science = next(line for line in text.splitlines() if line.strip().startswith("science"))
    assert science.split()[1:] == ["1.000", "1.000"] and "round_0" in text
