"""Conversion rules from the paper's data-building list. Each rule takes a Candidate and returns it (possibly
rewritten) or raises Rejected with its reason; `CONVERSION_RULES` is the order they run in.

>>> c = Candidate("demo", "science", "Which is a mammal?", "(b)", None, choices=["A. shark", "B. whale"])
>>> normalise_choices(c).answer, c.choices
('B', ['shark', 'whale'])
"""

from __future__ import annotations

import re
from collections.abc import Callable

from visiong1.config import DataConfig
from visiong1.data.schema import Candidate, Rejected
from visiong1.rewards import ANSWER_TYPES, AnswerParseError, GroundTruthError, score
from visiong1.rewards.choice import letter_of
from visiong1.rewards.grounding import reference_answer
from visiong1.rewards.math import as_number, normalise_latex
from visiong1.rewards.normalise import normalise_answer, split_unit

_OPTION_PREFIX = re.compile(r"^\s*\(?([A-Za-z])\)?[.:)]\s+")
_NUMBER = re.compile(r"^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$")
_LATEX_COMMAND = re.compile(r"\\[a-zA-Z]+")
# "(1) ... (2) ...", "1. ... 2. ...", "(ii) ..." enumerations of sub-questions ("a) cat b) dog" are options)
_ENUMERATED = re.compile(r"(?:^|\s)(?:\(\s*(?:[1-9]|i{1,3}|iv)\s*\)|[1-9][.)]\s)", re.IGNORECASE)


def normalise_ground_truth(candidate: Candidate) -> Candidate:
    """The answer as the scorers normalise it (LaTeX wrappers off, percent words as `\\%`); a changed answer keeps
    the source's original in metadata["original_answer"] (the scorers accept both)."""
    answer = normalise_answer(candidate.answer)
    if answer != candidate.answer:
        candidate.metadata = {**candidate.metadata, "original_answer": candidate.answer}
        candidate.answer = answer
    return candidate


def infer_answer_type(candidate: Candidate) -> Candidate:
    """Fill a missing answer type: `choice` with options, `math` for numbers (`1,000`, `3/4`, `28\\%`, with or
    without a unit) and LaTeX commands, else `text`; reject unknown types."""
    if candidate.answer_type is None:
        value = split_unit(candidate.answer)[0]
        mathematical = as_number(normalise_latex(value)) is not None or _LATEX_COMMAND.search(candidate.answer)
        candidate.answer_type = "choice" if candidate.choices else ("math" if mathematical else "text")
    if candidate.answer_type not in ANSWER_TYPES:
        raise Rejected("unknown_answer_type", f"{candidate.answer_type!r} (known: {', '.join(ANSWER_TYPES)})")
    return candidate


def normalise_choices(candidate: Candidate) -> Candidate:
    """Choice answers become a single letter; option texts lose their "A." prefixes (kept as `choices`)."""
    if candidate.answer_type not in (None, "choice") or not candidate.choices:
        return candidate
    candidate.choices = [_OPTION_PREFIX.sub("", str(option), count=1).strip() for option in candidate.choices]
    letter = letter_of(str(candidate.answer), candidate.choices)
    if letter is None or ord(letter) - ord("A") >= len(candidate.choices):
        raise Rejected("choice_unresolved", f"answer {candidate.answer!r} names no single one of "
                                            f"{len(candidate.choices)} options")
    candidate.answer = letter
    candidate.answer_type = "choice"
    return candidate


def count_sub_questions(question: str) -> int:
    """Question marks outside option lists, or enumerated parts, whichever is larger.

    >>> count_sub_questions("What is x? What is y?"), count_sub_questions("(1) Find x. (2) Find y."), count_sub_questions("How many?")
    (2, 2, 1)
    """
    return max(question.count("?"), len(_ENUMERATED.findall(question)))


def reject_multiple_questions(candidate: Candidate) -> Candidate:
    """One item, one verifiable answer: questions with several sub-questions are rejected."""
    parts = count_sub_questions(candidate.question)
    if parts > 1:
        raise Rejected("multiple_questions", f"{parts} sub-questions in {candidate.question[:120]!r}")
    return candidate


def choice_to_free_form(candidate: Candidate) -> Candidate:
    """Rewrite a multiple-choice item as free form: options dropped, the answer is the chosen option's text."""
    if candidate.answer_type != "choice" or not candidate.choices:
        return candidate
    text = candidate.choices[ord(candidate.answer) - ord("A")]
    candidate.metadata = {**candidate.metadata, "rewritten_from_choice": candidate.answer}
    candidate.answer, candidate.choices = text, None
    candidate.answer_type = "math" if _NUMBER.match(text) else "text"
    return candidate


def reference_response(candidate: Candidate) -> str:
    """What a perfect model would box: the answer itself, or the centre of the box for `point` items."""
    try:
        return reference_answer(candidate.answer, candidate.answer_type)
    except AnswerParseError:
        raise Rejected("answer_unverifiable",
                       f"point ground truth {candidate.answer!r} is not a box [x1, y1, x2, y2]") from None


def check_verifiable(candidate: Candidate, max_text_words: int) -> Candidate:
    """The answer must be accepted by its own scorer when boxed (a rule can verify it), and free text short."""
    if candidate.answer_type == "text" and len(candidate.answer.split()) > max_text_words:
        raise Rejected("answer_unverifiable", f"free-text answer of {len(candidate.answer.split())} words "
                                              f"(max {max_text_words})")
    meta = {**candidate.metadata, "choices": candidate.choices} if candidate.choices else candidate.metadata
    try:
        result = score(f"\\boxed{{{reference_response(candidate)}}}", candidate.answer, candidate.answer_type, **meta)
    except GroundTruthError as error:
        raise Rejected("answer_unverifiable", f"{candidate.answer_type} scorer: {error}") from None
    if result.accuracy != 1.0:
        raise Rejected("answer_unverifiable", f"{candidate.answer_type} scorer gives {result.reason} for "
                                              f"{candidate.answer[:80]!r}")
    return candidate


def conversion_rules(config: DataConfig) -> list[Callable[[Candidate], Candidate]]:
    """The rules in order, as configured."""
    rules = [normalise_ground_truth, infer_answer_type, normalise_choices]
    if config.reject_multi_question:
        rules.append(reject_multiple_questions)
    if config.free_form_choices:
        rules.append(choice_to_free_form)
    rules.append(lambda candidate: check_verifiable(candidate, config.max_text_answer_words))
    return rules
