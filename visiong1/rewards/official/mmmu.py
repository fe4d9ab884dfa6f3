"""MMMU (validation) and MMMU-Pro scoring: the official response parsers and matchers, quirks included.

Sources (reimplemented, not copied):
- MMMU: MMMU-Benchmark/MMMU @ bb0b95a945998d91dfef37e969e07d49d1139438, `mmmu/utils/eval_utils.py`
  (parse_multi_choice_response, check_is_number, normalize_str, extract_numbers, parse_open_response,
  eval_multi_choice, eval_open); ground truths as in `mmmu/answer_dict_val.json` (a few open answers are lists).
- MMMU-Pro: same commit, `mmmu-pro/evaluate.py` (its own parse_multi_choice_response: an `Answer:` line first,
  `X ` without a leading space, `X.`; correct iff the parsed letter equals the answer letter).

Quirks kept on purpose, so the number means what it means elsewhere:
- Multiple choice with no letter or option text found: the official parser picks a random option, and scores it.
  Here the pick is deterministic: `random.Random(seed)` with the seed a SHA-256 of the item (`item_id` metadata,
  else the ground truth and options). The official MMMU code seeds Python's `random` once per process (42), so
  its picks depend on the order items are scored; MMMU-Pro's does not seed at all. In training this means an
  unreadable response still earns the reward on about 1 item in n (n options), as it does in the official score.
- Letters are matched case-sensitively, `(B)` beats a bare ` B `, and the last-occurring candidate wins.
- Open answers: numbers compare after rounding to 2 decimals (the official "tolerance"); strings by substring.

Deviations: the rule reads the last `\\boxed{}`'s content when the response has one (the project's contract), and
only the response's last MAX_RESPONSE_CHARS characters; digit runs over MAX_DIGITS long are not read as numbers
(the official number regexes backtrack quadratically on them; no ground truth is that long).
"""

from __future__ import annotations

import ast
import hashlib
import random
import re

from visiong1.rewards.base import GroundTruthError, RewardResult
from visiong1.rewards.extract import as_text, extract_boxed

MAX_RESPONSE_CHARS = 10_000
MAX_DIGITS = 64
MMMU_PRO_SETTINGS = ("standard (10 options)", "vision")
_EDGE_PUNCTUATION = [",", ".", "!", "?", ";", ":", "'"]
_KEY_INDICATORS = ["could be ", "so ", "is ", "thus ", "therefore ", "final ", "answer ", "result "]
# The official split pattern runs on lower-cased text, so its `(?=[A-Z])` branch never fires: only newlines split.
_SENTENCE_SPLIT = re.compile(r"\.\s(?=[A-Z])|\n")
_NUMBER_WITH_COMMAS = re.compile(r"-?\b\d{1,3}(?:,\d{3})+\b")
_NUMBER_SCIENTIFIC = re.compile(r"-?\d+(?:\.\d+)?[eE][+-]?\d+")
_NUMBER_SIMPLE = re.compile(r"-?(?:\d+\.\d+|\.\d+|\d+\b)(?![eE][+-]?\d+)(?![,\d])")
_LONG_DIGIT_RUN = re.compile(rf"\d{{{MAX_DIGITS + 1},}}")


def score_mmmu(response: str, ground_truth: str, question_type: str = "multiple-choice",
               choices: list[str] | None = None, setting: str | None = None, item_id: str | None = None,
               **meta) -> RewardResult:
    """MMMU's rule (or MMMU-Pro's when `setting` names an MMMU-Pro setting) on the response's last box, else on
    the whole response. `ground_truth` is the option letter for multiple choice; for open questions the answer
    text, or a Python list literal of accepted answers. Raises GroundTruthError for an unusable ground truth."""
    text = _answer_text(response)
    if setting is not None:
        if setting not in MMMU_PRO_SETTINGS:
            raise GroundTruthError(f"unknown MMMU-Pro setting {setting!r}; known: {MMMU_PRO_SETTINGS}")
        letters, index2ans = _options(choices, ground_truth)
        picked = parse_mmmu_pro_choice(text, letters, index2ans, _seed(item_id, ground_truth, choices))
        return RewardResult.verdict(picked == ground_truth, picked)
    if question_type == "multiple-choice":
        letters, index2ans = _options(choices, ground_truth)
        picked = parse_multi_choice_response(text, letters, index2ans, _seed(item_id, ground_truth, choices))
        return RewardResult.verdict(picked == ground_truth, picked)
    if question_type == "open":
        return _score_open(text, _open_answers(ground_truth))
    raise GroundTruthError(f"MMMU question_type must be 'multiple-choice' or 'open', got {question_type!r}")


def _answer_text(response: str) -> str:
    text = as_text(response)[-MAX_RESPONSE_CHARS:]
    boxed = extract_boxed(text)
    return text if boxed is None else boxed


def _options(choices: list[str] | None, ground_truth: str) -> tuple[list[str], dict[str, str]]:
    """(letters, letter -> option text), as the official get_multi_choice_info builds them."""
    if not choices:
        raise GroundTruthError("an MMMU multiple-choice item needs its options (choices=)")
    letters = [chr(ord("A") + i) for i in range(len(choices))]
    if ground_truth not in letters:
        raise GroundTruthError(f"MMMU ground truth {ground_truth!r} is not one of the option letters {letters}")
    return letters, dict(zip(letters, choices))


def _seed(item_id: str | None, ground_truth: str, choices: list[str] | None) -> int:
    key = item_id if item_id else f"{ground_truth}\x1f{choices!r}"
    return int.from_bytes(hashlib.sha256(key.encode("utf-8", errors="replace")).digest()[:8], "big")


def _strip_edges(response: str) -> str:
    """The official edge strip: each punctuation character in turn, then a space either side."""
    for char in _EDGE_PUNCTUATION:
        response = response.strip(char)
    return f" {response} "


def parse_multi_choice_response(response: str, letters: list[str], index2ans: dict[str, str], seed: int) -> str:
    """MMMU's multiple-choice parser: `(X)` forms first, then ` X `, then (responses over 5 words) option texts;
    several candidates -> the one whose last occurrence is latest; none -> a seeded random letter.

    >>> parse_multi_choice_response("(A) or maybe (C)", ["A", "B", "C"], {}, seed=0)
    'C'
    """
    response = _strip_edges(response)
    candidates = [letter for letter in letters if f"({letter})" in response]
    if candidates:
        return _latest(candidates, [response.rfind(f"({c})") for c in candidates])
    candidates = [letter for letter in letters if f" {letter} " in response]
    if candidates:
        return _latest(candidates, [response.rfind(f" {c} ") for c in candidates])
    return _by_option_text(response, letters, index2ans, seed)


def parse_mmmu_pro_choice(response: str, letters: list[str], index2ans: dict[str, str], seed: int) -> str:
    """MMMU-Pro's parser: a unique letter after the last `Answer:` wins; then `(X)`, then `X ` (no leading
    space, so `I think` names option I), then `X.`, then option texts, then a seeded random letter."""
    answer_at = response.rfind("Answer:")
    if answer_at != -1:
        named = [letter for letter in letters if letter in response[answer_at + len("Answer:"):].strip()]
        if len(named) == 1:
            return named[0]
    response = _strip_edges(response)
    candidates = [letter for letter in letters if f"({letter})" in response]
    if candidates:
        return _latest(candidates, [response.rfind(f"({c})") for c in candidates])
    candidates = ([letter for letter in letters if f"{letter} " in response]
                  or [letter for letter in letters if f"{letter}." in response])
    if candidates:  # officially located by ` X `, which a `X.`-only or `DNA `-style hit lacks (rfind gives -1)
        return _latest(candidates, [response.rfind(f" {c} ") for c in candidates])
    return _by_option_text(response, letters, index2ans, seed)


def _by_option_text(response: str, letters: list[str], index2ans: dict[str, str], seed: int) -> str:
    """Both parsers' last resorts: option texts found in a response of more than 5 words, else a random letter."""
    lowered = response.lower()
    if len(response.split()) > 5:
        candidates = [letter for letter, text in index2ans.items() if text.lower() in lowered]
        if candidates:
            return _latest(candidates, [lowered.rfind(index2ans[c].lower()) for c in candidates])
    return random.Random(seed).choice(letters)


def _latest(candidates: list[str], positions: list[int]) -> str:
    """np.argmax semantics: the first candidate among those with the greatest position."""
    return candidates[max(range(len(candidates)), key=positions.__getitem__)]


def _open_answers(ground_truth: str) -> list[str]:
    """An open question's accepted answers: a list literal's items, else the answer itself."""
    if not isinstance(ground_truth, str) or not ground_truth.strip():
        raise GroundTruthError(f"MMMU open ground truth must be non-empty text, got {ground_truth!r}")
    stripped = ground_truth.strip()
    if stripped.startswith("[") and stripped.endswith("]"):
        try:
            answers = ast.literal_eval(stripped)
        except (ValueError, SyntaxError):
            raise GroundTruthError(f"MMMU open ground truth {ground_truth!r} is not a list literal") from None
        if not isinstance(answers, list) or not answers:
            raise GroundTruthError(f"MMMU open ground truth {ground_truth!r} must be a non-empty list")
        return [str(answer) for answer in answers]
    return [ground_truth]


def _score_open(text: str, answers: list[str]) -> RewardResult:
    """eval_open: a string prediction is right if it contains a string answer, a number if it equals one."""
    keys = key_subresponses(text)
    predictions = parse_open_response(keys)
    gold = [norm for answer in answers for norm in normalize_str(answer)]
    for prediction in predictions:
        if isinstance(prediction, str):
            if any(isinstance(norm, str) and norm in prediction for norm in gold):
                return RewardResult.verdict(True, prediction.strip())
        elif prediction in gold:
            return RewardResult.verdict(True, f"{prediction:g}")
    return RewardResult.verdict(False, " | ".join(keys)[:200])


def check_is_number(string: str) -> bool:
    """Python's float() accepts it once commas are dropped (so `1e3`, `inf` and `1_000` are numbers too)."""
    try:
        float(string.replace(",", ""))
        return True
    except ValueError:
        return False


def normalize_str(string: str) -> list[str | float]:
    """A number -> [its value rounded to 2 decimals]; text -> [lower case], a single character padded both ways
    (` x`, `x `) so it only matches as a word edge."""
    string = string.strip()
    if check_is_number(string):
        return [round(float(string.replace(",", "")), 2)]
    string = string.lower()
    return [" " + string, string + " "] if len(string) == 1 else [string]


def extract_numbers(string: str) -> list[str]:
    """Numbers with thousands commas, in scientific notation, and plain, in that order (official regexes)."""
    string = _LONG_DIGIT_RUN.sub(" ", string)
    return (_NUMBER_WITH_COMMAS.findall(string) + _NUMBER_SCIENTIFIC.findall(string)
            + _NUMBER_SIMPLE.findall(string))


def key_subresponses(response: str) -> list[str]:
    """Per line of the lower-cased response, the shortest tail after an indicator word (`is `, `so `, ...; also
    `=` on the last line); the whole response when no line has one."""
    response = response.strip().strip(".").lower()
    lines = _SENTENCE_SPLIT.split(response)
    keys = []
    for index, line in enumerate(lines):
        indicators = _KEY_INDICATORS + (["="] if index == len(lines) - 1 else [])
        shortest = None
        for indicator in indicators:
            if indicator in line:
                tail = line.split(indicator)[-1].strip()
                if not shortest or len(tail) < len(shortest):  # official: an empty tail is replaced by any later
                    shortest = tail
        if shortest and shortest.strip() not in _EDGE_PUNCTUATION:
            keys.append(shortest)
    return keys or [response]


def parse_open_response(keys: list[str]) -> list[str | float]:
    """The official prediction set: the key sub-responses and every number in them, normalised, duplicates
    dropped (in first-seen order rather than a set's, so the reported match is reproducible)."""
    raw = keys + [number for key in keys for number in extract_numbers(key)]
    return list(dict.fromkeys(norm for item in raw for norm in normalize_str(item)))
