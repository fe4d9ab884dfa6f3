"""`math` answers: exact and numeric fast paths in-process, then math-verify equivalence in the sandbox."""

from __future__ import annotations

import re
from fractions import Fraction

from visiong1.rewards.base import AnswerParseError, RewardResult
from visiong1.rewards.guard import check_answer
from visiong1.rewards.normalise import top_level_parts
from visiong1.rewards.sandbox import SymbolicSandbox

SYMBOLIC_FUNCTION = "visiong1.rewards.math:symbolic_equal"
_SPACING = re.compile(r"\\[,!;:]|\\left|\\right|\\displaystyle|\s+")
_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?")
_FRAC = re.compile(r"^(-?)\\[dt]?frac\{(-?[\d.]+)\}\{(-?[\d.]+)\}$")


def normalise_latex(answer: str) -> str:
    """Drop spacing commands, `\\left`/`\\right`, dollar signs and a trailing period; `\\dfrac` -> `\\frac`."""
    answer = _SPACING.sub("", answer.strip().strip("$")).rstrip(".")
    return answer.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")


def as_number(answer: str) -> tuple[Fraction, bool] | None:
    """Exact value of a plain number (`1,000`, `-2.5`, `3/4`, `\\frac{3}{4}`, `40\\%`) and whether it had a percent
    sign, or None when the answer is not a plain number.

    >>> as_number("\\\\frac{3}{4}")
    (Fraction(3, 4), False)
    >>> as_number("12.5\\\\%")
    (Fraction(1, 8), True)
    """
    percent = answer.endswith(("\\%", "%"))
    body = answer.removesuffix("\\%").removesuffix("%")
    fraction = _FRAC.match(body)
    try:
        if fraction:
            value = Fraction(fraction.group(2)) / Fraction(fraction.group(3))
            value = -value if fraction.group(1) else value
        elif body.count("/") == 1 and all(_NUMBER.fullmatch(part) and part for part in body.split("/")):
            numerator, denominator = body.split("/")
            value = Fraction(numerator.replace(",", "")) / Fraction(denominator.replace(",", ""))
        elif body and _NUMBER.fullmatch(body) and any(c.isdigit() for c in body):
            value = Fraction(body.replace(",", ""))
        else:
            return None
    except ZeroDivisionError:
        return None
    return (value / 100 if percent else value), percent


def _numbers_equal(predicted: tuple[Fraction, bool], truth: tuple[Fraction, bool], rel: float = 1e-6) -> bool:
    """Equal up to `rel` or after rounding to 6 decimals (math-verify's float_rounding). When only one side has a
    percent sign, it may also be read as its bare number (`50%` == `50` as well as `0.5`), as math-verify does."""
    (value, value_percent), (target, target_percent) = predicted, truth
    readings = [(value, target)]
    if value_percent != target_percent:
        readings.append((value * 100, target) if value_percent else (value, target * 100))
    return any(abs(a - b) <= rel * abs(b) or round(a, 6) == round(b, 6) for a, b in readings)


def score_math(extracted: str, ground_truth: str, sandbox: SymbolicSandbox, answer_order: str = "fixed",
               **meta) -> RewardResult:
    r"""Equivalence of two math answers: fractions, decimals, percents, LaTeX, intervals, sets, expressions.

    A ground truth of several answers (`(1, 2), (2, 1)`; commas outside brackets, not a thousands separator) is
    compared answer by answer in order, unless the item's `answer_order` is `free`: then as sets.

    Differs from Vision-G1's released rule on purpose: only the extracted (last boxed) answer is judged, never the
    whole response, since matching anywhere in the text rewards answers that list several candidates.

    >>> from visiong1.rewards import default_sandbox
    >>> score_math("0.5", "\\frac{1}{2}", default_sandbox()).reason
    'correct'
    >>> score_math("[1, 2)", "(1, 2]", default_sandbox()).reason
    'wrong'
    >>> [score_math("2, 1", "1, 2", default_sandbox(), order).reason for order in ("fixed", "free")]
    ['wrong', 'correct']
    """
    check_answer(extracted)
    predicted, truth = normalise_latex(extracted), normalise_latex(ground_truth)
    truth_parts = top_level_parts(truth)
    if len(truth_parts) > 1 and as_number(truth) is None and answer_order != "free":
        predicted_parts = top_level_parts(predicted)
        if len(predicted_parts) != len(truth_parts):
            return RewardResult.verdict(False, extracted)
        verdicts = [_equivalent(p, t, extracted, sandbox) for p, t in zip(predicted_parts, truth_parts)]
        failed = next((v for v in verdicts if v.reason not in ("correct", "wrong")), None)
        return failed or RewardResult.verdict(all(v.accuracy == 1.0 for v in verdicts), extracted)
    return _equivalent(predicted, truth, extracted, sandbox)


def _equivalent(predicted: str, truth: str, extracted: str, sandbox: SymbolicSandbox) -> RewardResult:
    """One normalised answer against one normalised ground truth: exact, numeric, then symbolic."""
    if predicted == truth:
        return RewardResult.verdict(True, extracted)
    predicted_number, truth_number = as_number(predicted), as_number(truth)
    if predicted_number is not None and truth_number is not None:
        return RewardResult.verdict(_numbers_equal(predicted_number, truth_number), extracted)
    outcome = sandbox.call(SYMBOLIC_FUNCTION, predicted, truth)
    if outcome.reason is not None:
        return RewardResult.failure(outcome.reason, extracted)
    return RewardResult.verdict(bool(outcome.value), extracted)


def symbolic_equal(predicted: str, truth: str) -> bool:
    """math-verify equivalence of two LaTeX answers. Runs only inside a sandbox worker: parsing uses LaTeX
    extraction alone (no Python-expression parsing, which would `eval` text) and no SIGALRM timeouts (the parent
    kills the worker instead)."""
    from math_verify import LatexExtractionConfig, parse, verify

    config = [LatexExtractionConfig(boxed_match_priority=0)]
    parsed_truth = parse(f"${truth}$", extraction_config=config, parsing_timeout=None)
    parsed_prediction = parse(f"${predicted}$", extraction_config=config, parsing_timeout=None)
    if not parsed_prediction:
        raise AnswerParseError(f"math-verify found no expression in {predicted[:80]!r}")
    if not parsed_truth:
        raise AnswerParseError(f"math-verify found no expression in the ground truth {truth[:80]!r}")
    return verify(parsed_truth, parsed_prediction, timeout_seconds=None)
