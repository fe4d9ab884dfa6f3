"""One normalisation for both sides of a comparison: the ground truth as a dataset wrote it and the answer a model
boxed go through the same rules before any scorer compares them.

>>> normalise_answer(r"$\\text{(B)}$"), normalise_answer(r"\\frac{1}{\\mathrm{e}}"), normalise_answer("28 percent")
('(B)', '\\\\frac{1}{e}', '28\\\\%')
>>> split_unit(r"3 \\text{ cm}"), split_unit("45"), split_unit(r"30^\\circ")
(('3', 'cm'), ('45', None), ('30', '°'))
"""

from __future__ import annotations

import re

# Font and text commands whose argument is the answer itself (innermost first, so nesting unwraps fully).
_WRAPPER = re.compile(r"\\(?:text|textbf|textit|textrm|textnormal|mathrm|mathbf|mathit|mathsf|mbox|operatorname)"
                      r"\s*\{([^{}]*)\}")
_DELIMITED = re.compile(r"^(?:\$\$(.*)\$\$|\$(.*)\$|\\\((.*)\\\)|\\\[(.*)\\\])$", re.DOTALL)
_PERCENT_WORDS = re.compile(r"\s*(?:percent|per\s+cent|pct)\.?$", re.IGNORECASE)
_DEGREES = re.compile(r"\s*(?:\^\s*\{?\\circ\}?|°|\\degree)")
# Units a ground truth may state after its number. A closed list: a letter after a number is otherwise a
# variable (`2x` is not two of unit x).
_UNIT_WORDS = ("mm cm dm m km in inch inches ft feet foot yd yard yards mi mile miles mg g kg lb lbs pound pounds "
               "oz ton tons t ms s sec secs second seconds min mins minute minutes h hr hrs hour hours day days "
               "week weeks month months year years ml mL l L cc K N J kJ W kW V A Hz Pa kPa mph kph units unit "
               "dollars dollar cents cent yuan euros euro degrees degree meters metres meter metre centimeters "
               "centimetres millimeters kilometers people students times").split()
_WITH_UNIT = re.compile(r"^([-+]?(?:\d[\d,]*(?:\.\d+)?|\.\d+|\\frac\{[^{}]+\}\{[^{}]+\}))\s*"
                        r"((?:(?:square|sq|cubic)\s+)?(?:" + "|".join(map(re.escape, _UNIT_WORDS)) +
                        r")(?:\^\{?[23]\}?|²|³)?|°[CF]?)$")
_MAX_UNWRAP_PASSES = 8


def unwrap_latex(answer: str) -> str:
    """The answer without math delimiters around it (`$..$`, `$$..$$`, `\\(..\\)`, `\\[..\\]`) or text/font
    commands anywhere (`\\text{}`, `\\textbf{}`, `\\mathrm{}`, ...), whitespace trimmed."""
    answer = answer.strip()
    for _ in range(_MAX_UNWRAP_PASSES):  # bounded: each pass removes one nesting level
        delimited = _DELIMITED.match(answer)
        unwrapped = next(group for group in delimited.groups() if group is not None) if delimited else answer
        unwrapped = _WRAPPER.sub(r"\1", unwrapped).strip()
        if unwrapped == answer:
            break
        answer = unwrapped
    return answer


def normalise_answer(answer: str) -> str:
    """LaTeX wrappers removed, a spelled-out percent written `\\%`, degree marks written `°`, runs of whitespace
    one space (unwrapping `3 \\text{ cm}` leaves two)."""
    answer = _PERCENT_WORDS.sub("\\%", unwrap_latex(answer))
    return " ".join(_DEGREES.sub("°", answer).split())


def split_unit(answer: str) -> tuple[str, str | None]:
    """(value, unit) of a number written with a unit, else (answer, None). Units compare case-sensitively
    (`m` is not `M`); whitespace inside the unit is dropped."""
    match = _WITH_UNIT.match(normalise_answer(answer))
    if not match:
        return normalise_answer(answer), None
    return match.group(1), match.group(2).replace(" ", "")


def unit_mismatch(answer: str, ground_truth: str) -> bool:
    """True when both sides state a unit and the units differ (`3 m` against `3 cm`): math-verify drops units, so
    the comparison must fail before it."""
    truth_unit, answer_unit = split_unit(ground_truth)[1], split_unit(answer)[1]
    return None not in (truth_unit, answer_unit) and truth_unit != answer_unit


def without_unit_of(answer: str, ground_truth: str) -> tuple[str, str]:
    """Both sides normalised and without the ground truth's unit: a model may give or omit the unit the ground
    truth states (check `unit_mismatch` first for a different one)."""
    truth_value, unit = split_unit(ground_truth)
    if unit is None:
        return normalise_answer(answer), normalise_answer(ground_truth)
    value, answer_unit = split_unit(answer)
    return (value if answer_unit == unit else normalise_answer(answer)), truth_value


def top_level_parts(answer: str) -> list[str]:
    """The answer split at commas outside brackets: `(1, 2), (2, 1)` -> [`(1, 2)`, `(2, 1)`]; `\\{1, 2\\}` stays
    one part. Thousands separators are the caller's concern."""
    parts, depth, start = [], 0, 0
    for index, char in enumerate(answer):
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(answer[start:index].strip())
            start = index + 1
    return [*parts, answer[start:].strip()]
