"""MathVision (MATH-V): the official rule-based evaluation, quirks included.

Source: mathllm/MATH-V @ a1f5cc3add200c0cd080fad463e500f44ef1fb41, `evaluation/evaluate.py` (evaluate: answer
extraction from the response, `correct = is_equal(gt, answer) or is_equal(gt_option_text, answer)`) and
`evaluation/utils.py` (find_math_answer, _strip_string, eval_tuple, is_equal).

The official rule, in order:
1. extraction: a response ending in ` C.` / ` (C).` or starting `C\\n` / `(C)\\n` / `(C) C\\n` becomes the letter;
   text after the last `is ` that parses as a number is taken; without a box, text after the last "the (final|
   correct) answer is" / "the answer should be" (each also capitalised) up to the line or sentence end is taken;
   then find_math_answer lowercases, takes the last `oxed{...}` content, keeps the part after the last `=` and
   `\\approx`, drops spaces, units and LaTeX decoration (`\\text`, `\\left`, degrees, `$`, `\\%`), turns `0.5`
   into `\\frac{1}{2}` and `a/b` into `\\frac{a}{b}`, and strips `(a)`-style letter wrappers.
2. is_equal (case-insensitive): equal strings; else tuples/lists `(x,y)` compared element-wise after evaluating each
   element to 2 decimals; else both sides evaluated numerically and compared after rounding to 2 decimals.
   The multi-choice ground truth is its letter *or* its option's text.

Deviation: the official code evaluates answers with `eval(str(latex2sympy(x)))`, which only succeeds for numeric
expressions (free symbols raise NameError). Running eval on model output is unsafe, so a bounded evaluator of the
same numeric subset stands in: numbers, + - * / ^, parentheses/braces, implicit products, \\frac, \\sqrt (with an
optional index), \\pi, \\cdot, \\times. Expressions outside it (e.g. trigonometric functions) compare unequal here
where latex2sympy might evaluate them.
"""

from __future__ import annotations

import math
import re

from visiong1.rewards.base import GroundTruthError, RewardResult
from visiong1.rewards.extract import extract_boxed

_ANSWER_FLAGS = ("the final answer is", "the answer is", "the correct answer is", "the answer should be")
_LETTER_WRAPPERS = [(f"({letter})", letter) for letter in "abcde"] + [(f"{{{letter}}}", letter) for letter in "abcde"]
_MAX_EXPRESSION_CHARS = 200


def score_mathvision(response: str, ground_truth: str, choices: list[str] | None = None, **meta) -> RewardResult:
    """Judge a whole response by MATH-V's rule (module docstring); the rule runs on the last box's content when
    there is one. `choices` are the options (ground truth is then a letter) or None for free-form questions."""
    option_text = _option_text(ground_truth, choices)
    boxed = extract_boxed(response)
    answer = official_model_answer(response if boxed is None else boxed)
    if not answer:
        return RewardResult.failure("no_answer", None)
    correct = is_equal(ground_truth, answer) or is_equal(option_text, answer)
    return RewardResult.verdict(correct, answer)


def _option_text(ground_truth: str, choices: list[str] | None) -> str:
    if not ground_truth.strip():
        raise GroundTruthError("MathVision ground truth is empty")
    if not choices:
        return ""
    index = ord(ground_truth) - ord("A") if len(ground_truth) == 1 else -1
    if not 0 <= index < len(choices):
        raise GroundTruthError(f"MathVision answer {ground_truth!r} names none of the {len(choices)} options")
    return choices[index]


def official_model_answer(response: str) -> str:
    """evaluate.py's extraction of `model_answer` from a response (see the module docstring)."""
    answer = response.strip()
    for letter in "ABCDE":
        if (answer.endswith((f" {letter}.", f" ({letter}).")) or
                answer.startswith((f"{letter}\n", f"({letter})\n", f"({letter}) {letter}\n"))):
            answer = letter
    after_is = answer.split("is ")[-1].rstrip(".")
    if _is_number(after_is):
        answer = after_is
    if "oxed{" not in answer:
        answer = _after_answer_flags(answer)
    elif answer.count("oxed{") > 1:
        answer = "\\boxed{" + answer.split("oxed{")[-1]
    answer = find_math_answer(answer)
    for wrapped, letter in _LETTER_WRAPPERS:
        answer = answer.replace(wrapped, letter)
    return answer.rstrip(".").lstrip(":").strip()


def _after_answer_flags(answer: str) -> str:
    for flag in _ANSWER_FLAGS:
        for variant in (flag, flag.replace("the", "The")):
            found = variant in answer
            answer = answer.split(variant)[-1].strip()
            if found:
                answer = answer.split("\n")[0].split(". ")[0]
    return answer


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def find_math_answer(text: str) -> str:
    """utils.find_math_answer: the (single) `oxed{}` content, cleaned; the whole text when there is no box."""
    text = text.lower().replace("{}", "")
    opener = text.rfind("oxed{")
    closer = text.rfind("}")
    # The official greedy regex `oxed{(.*)}` runs to the last `}`; evaluate() leaves at most one `oxed{`.
    answer = text[opener + 5:closer] if 0 <= opener and opener + 5 <= closer else text
    if answer.find("}") != -1 and (answer.find("{") == -1 or answer.find("}") < answer.find("{")):
        answer = answer.split("}")[0]
    answer = answer.split("=")[-1].split("\\approx")[-1]
    for old, new in ((" ", ""), ("\\,", ""), ("∞", "\\infty"), ("+\\infty", "\\infty"), ("\\\\", "\\"),
                     ("\n", ""), ("\\text", ""), ("\\mbox", ""), ("bmatrix", "pmatrix"), ("\\left", ""),
                     ("\\right", ""), ("^{\\circ}", ""), ("^\\circ", ""), ("{m}^3", ""), ("m^3", ""),
                     ("{units}", ""), ("units", ""), ("{km}", ""), ("km", "")):
        answer = answer.replace(old, new)
    return _strip_string(answer)


def _strip_string(text: str) -> str:
    """utils._strip_string, step for step (its `_fix_fracs` only runs when the text has a sqrt: a quirk kept)."""
    for old, new in (("\n", ""), ("\\!", ""), ("\\\\", "\\"), ("tfrac", "frac"), ("dfrac", "frac"), ("\\left", ""),
                     ("\\right", ""), ("^{\\circ}", ""), ("^\\circ", ""), ("\\$", ""), ("$", "")):
        text = text.replace(old, new)
    text = text.split("\\text{ ")[0]
    text = text.replace("\\%", "").replace(" .", " 0.").replace("{.", "{0.")
    if not text:
        return text
    if text[0] == ".":
        text = "0" + text
    if len(text.split("=")) == 2:
        text = text.split("=")[-1]
    if len(text.split("\\approx")) == 2:
        text = text.split("\\approx")[-1]
    if "sqrt" in text:
        text = _fix_sqrt(text)
    text = text.replace(" ", "")
    if "sqrt" in text:
        text = _fix_fracs(text)
    if text == "0.5":
        text = "\\frac{1}{2}"
    return _fix_a_slash_b(text)


def _fix_sqrt(text: str) -> str:
    head, *tails = text.split("\\sqrt")
    return head + "".join(f"\\sqrt{{{tail[0]}}}{tail[1:]}" if tail and tail[0] != "{" else f"\\sqrt{tail}"
                          for tail in tails)


def _fix_fracs(text: str) -> str:
    head, *tails = text.split("\\frac")
    fixed = head
    for tail in tails:
        fixed += "\\frac"
        if tail.startswith("{"):
            fixed += tail
        elif len(tail) < 2:
            return text
        elif tail[1] != "{":
            fixed += f"{{{tail[0]}}}{{{tail[1]}}}{tail[2:]}"
        else:
            fixed += f"{{{tail[0]}}}{tail[1:]}"
    return fixed


def _fix_a_slash_b(text: str) -> str:
    parts = text.split("/")
    if len(parts) != 2 or len(text) > _MAX_EXPRESSION_CHARS:
        return text
    try:
        numerator, denominator = int(parts[0]), int(parts[1])
    except ValueError:
        return text
    return f"\\frac{{{numerator}}}{{{denominator}}}" if text == f"{numerator}/{denominator}" else text


def is_equal(first: str, second: str) -> bool:
    """utils.is_equal: case-insensitive equality, then element-wise tuple equality, then numeric equality at
    2 decimals; anything that fails to evaluate is unequal."""
    first, second = first.lower(), second.lower()
    if not first.replace(" ", "") or not second.replace(" ", ""):
        return False
    if first.strip() == second.strip():
        return True
    first, second = _eval_tuple(first), _eval_tuple(second)
    if first == second:
        return True
    first_value, second_value = _numeric(first), _numeric(second)
    return first_value is not None and second_value is not None and round(first_value, 2) == round(second_value, 2)


def _eval_tuple(text: str) -> str:
    """utils.eval_tuple: `(x,y,...)` / `[x,y,...]` with each element evaluated and rounded to 2 decimals; the text
    unchanged when it is no such tuple or an element fails to evaluate."""
    elements = text[1:-1].split(",")
    brackets = text[0] + text[-1]
    if brackets not in ("()", "[]") or len(elements) < 2:
        return text
    evaluated = []
    for element in elements:
        if "infty" in element or element in ("a", "-a"):
            evaluated.append(element)
            continue
        value = _numeric(element)
        if value is None:
            return text
        evaluated.append(_python_str(round(value, 2)))
    return brackets[0] + ",".join(evaluated) + brackets[1]


def _python_str(value: float) -> str:
    # latex2sympy yields Python ints for integral values, whose str has no ".0"
    return str(int(value)) if value.is_integer() else str(value)


def _numeric(text: str) -> float | None:
    """The value of a numeric LaTeX expression, or None (not numeric, malformed, too long, overflow, complex)."""
    if len(text) > _MAX_EXPRESSION_CHARS:
        return None
    tokens = _TOKEN.findall(text)
    if "".join(tokens) != text.replace(" ", ""):
        return None  # characters outside the numeric subset
    try:
        parser = _Parser(tokens)
        value = parser.expression()
        if parser.position != len(tokens) or isinstance(value, complex) or not math.isfinite(value):
            return None
        return float(value)
    except (_ParseError, ArithmeticError, ValueError, TypeError, RecursionError):
        return None


_TOKEN = re.compile(r"\d+\.?\d*|\.\d+|\\frac|\\sqrt|\\pi|\\cdot|\\times|pi|[-+*/^(){}\[\]]")


class _ParseError(ValueError):
    pass


class _Parser:
    """Recursive descent over the numeric subset; floats throughout, so overflow raises instead of growing."""

    def __init__(self, tokens: list[str]):
        self.tokens = tokens
        self.position = 0

    def peek(self) -> str | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None or (expected is not None and token != expected):
            raise _ParseError(f"expected {expected or 'a token'} at {self.position}")
        self.position += 1
        return token

    def expression(self) -> float:
        value = self.term()
        while self.peek() in ("+", "-"):
            value = value + self.term() if self.take() == "+" else value - self.term()
        return value

    def term(self) -> float:
        value = self.unary()
        while True:
            token = self.peek()
            if token in ("*", "/", "\\cdot", "\\times"):
                self.take()
                value = value / self.unary() if token == "/" else value * self.unary()
            elif token is not None and _starts_atom(token):
                value = value * self.power()  # implicit product: 2\sqrt{3}, 3(4)
            else:
                return value

    def unary(self) -> float:
        if self.peek() in ("+", "-"):
            return -self.unary() if self.take() == "-" else self.unary()
        return self.power()

    def power(self) -> float:
        base = self.atom()
        if self.peek() == "^":
            self.take()
            return base ** self.unary()
        return base

    def atom(self) -> float:
        token = self.take()
        if token in ("(", "{"):
            value = self.expression()
            self.take(")" if token == "(" else "}")
            return value
        if token == "\\frac":
            return self.group() / self.group()
        if token == "\\sqrt":
            index = 2.0
            if self.peek() == "[":
                self.take()
                index = self.expression()
                self.take("]")
            return self.group() ** (1 / index)
        if token in ("\\pi", "pi"):
            return math.pi
        if token[0].isdigit() or token[0] == ".":
            return float(token)
        raise _ParseError(f"unexpected {token!r}")

    def group(self) -> float:
        self.take("{")
        value = self.expression()
        self.take("}")
        return value


def _starts_atom(token: str) -> bool:
    return token[0].isdigit() or token[0] == "." or token in ("(", "{", "\\frac", "\\sqrt", "\\pi", "pi")
