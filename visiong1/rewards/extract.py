"""Finding the answer in a response: the last `\\boxed{}`/`\\fbox{}` (the paper's rule), optional fallbacks."""

from __future__ import annotations

import re
from typing import Literal

from visiong1.rewards.normalise import unwrap_latex

Fallback = Literal["answer_tag", "answer_is"]
_BOX_OPENERS = ("\\boxed{", "\\fbox{")
_BRACES = re.compile(r"[{}]")
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_ANSWER_IS = re.compile(r"the (?:final )?answer is[:\s]*(.+?)(?:\.\s|\.?$)", re.IGNORECASE | re.MULTILINE)


def as_text(response: str | bytes) -> str:
    """Untrusted text to a clean str: invalid UTF-8 replaced, NUL and other C0 controls (bar tab/newline) dropped."""
    if isinstance(response, bytes):
        response = response.decode("utf-8", errors="replace")
    else:
        response = response.encode("utf-8", errors="replace").decode("utf-8")  # lone surrogates
    return response.translate(_CONTROL_CHARS)


_CONTROL_CHARS = {code: None for code in range(32) if chr(code) not in "\t\n\r"}


def extract_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` or `\\fbox{...}`, nested braces kept, LaTeX wrappers removed (`unwrap_latex`).

    >>> extract_boxed(r"so \\boxed{1} then \\boxed{\\frac{1}{2}}")
    '\\\\frac{1}{2}'
    >>> extract_boxed(r"\\boxed{\\text{blue}}")
    'blue'
    >>> extract_boxed("no box") is None
    True
    """
    found, opener = max((text.rfind(opener), opener) for opener in _BOX_OPENERS)
    if found < 0:
        return None
    start = found + len(opener)
    depth = 1
    for brace in _BRACES.finditer(text, start):  # regex scan: a megabyte without braces costs microseconds
        depth += 1 if brace.group() == "{" else -1
        if depth == 0:
            return unwrap_latex(text[start:brace.start()])
    return None  # the last box never closed


def extract_answer(response: str, fallbacks: tuple[Fallback, ...] = ()) -> str | None:
    """The last boxed answer; if there is none, the first fallback that matches, in the order given.

    Fallbacks are off by default: the paper rewards boxed answers only.

    >>> extract_answer("<answer>B</answer>", fallbacks=("answer_tag",))
    'B'
    >>> extract_answer("So the answer is 42.", fallbacks=("answer_is",))
    '42'
    """
    boxed = extract_boxed(response)
    if boxed is not None:
        return boxed
    for fallback in fallbacks:
        pattern = {"answer_tag": _ANSWER_TAG, "answer_is": _ANSWER_IS}[fallback]
        matches = pattern.findall(response)
        if matches:
            return unwrap_latex(matches[-1])
    return None
