"""MMStar, AI2D and ScienceQA-IMG scoring as VLMEvalKit evaluates them: its multiple-choice evaluation with the
`exact_matching` policy (no judge model), quirks included.

Source (reimplemented, not copied): open-compass/VLMEvalKit @ e8e78f05f3080fe28154f2130321f17951c3be94,
`vlmeval/utils/matching_util.py` (can_infer, can_infer_option, can_infer_text) and
`vlmeval/dataset/utils/multiple_choice.py` (extract_answer_from_item, eval_vanilla, build_prompt). The three
datasets are plain ImageMCQDatasets there (`vlmeval/dataset/image_mcq.py`): vanilla, not circular, evaluation,
a hit when the inferred letter equals the answer letter.

Rule: the response names an option letter if exactly one option letter stands as a word (after `.()[],:;!*#{}`
become spaces) and its first occurrence is among the last four words; else if it says "answer is X" (A-D only);
else it names the one option whose text it contains (lower-cased), provided it is at most twice as long as all
option texts together. A refusal phrase or a lone `Z` counts as the answer "Z" (never right).

Deviation: where nothing is inferred, VLMEvalKit's default run asks a GPT judge (chatgpt-0125) to map the answer
to an option; this module scores it wrong (`no_answer`), which is VLMEvalKit's own `exact_matching` result.
`judge_prompt` builds that judge's prompt for callers that want to run one; its reply is read with `can_infer`.
MMStar's own repository (MMStar-Benchmark/MMStar, `eval/vlmeval/evaluate/mmstar.py`) scores by the response's
first character instead; the MMStar numbers reported by VLMEvalKit and the OpenCompass leaderboard use this rule.
As everywhere in `visiong1.rewards.official`, the rule reads the last `\\boxed{}`'s content when there is one, and
at most the response's last MAX_RESPONSE_CHARS characters.
"""

from __future__ import annotations

import re
import string

from visiong1.rewards.base import GroundTruthError, RewardResult
from visiong1.rewards.extract import as_text, extract_boxed

MAX_RESPONSE_CHARS = 10_000
_SEPARATORS = str.maketrans({char: " " for char in ".()[],:;!*#{}"})
_REFUSALS = ("Sorry, I can't help with images of people yet.", "I can't process this file.",
             "I'm sorry, but without the image provided", "Cannot determine the answer")
_VERBOSE_ANSWER = re.compile(r"(?i)(?:correct\s+)?answer\s+is\s+\**([ABCD])\**")


def score_mmstar(response: str, ground_truth: str, choices: list[str] | None = None, **meta) -> RewardResult:
    """MMStar (VLMEvalKit `MMStar`): the VLMEvalKit multiple-choice rule; `ground_truth` is the option letter."""
    return score_vlmevalkit_choice(response, ground_truth, choices)


def score_ai2d(response: str, ground_truth: str, choices: list[str] | None = None, **meta) -> RewardResult:
    """AI2D (VLMEvalKit `AI2D_TEST`): the VLMEvalKit multiple-choice rule; `ground_truth` is the option letter."""
    return score_vlmevalkit_choice(response, ground_truth, choices)


def score_scienceqa(response: str, ground_truth: str, choices: list[str] | None = None, **meta) -> RewardResult:
    """ScienceQA-IMG (VLMEvalKit `ScienceQA_TEST`): the VLMEvalKit multiple-choice rule on the option letter."""
    return score_vlmevalkit_choice(response, ground_truth, choices)


def score_vlmevalkit_choice(response: str, ground_truth: str, choices: list[str] | None) -> RewardResult:
    """Correct iff the letter can_infer reads from the answer is `ground_truth`; nothing inferred is `no_answer`.
    Raises GroundTruthError without choices or with a ground truth that is not one of their letters."""
    options = _option_dict(choices, ground_truth)
    text = as_text(response)[-MAX_RESPONSE_CHARS:]
    boxed = extract_boxed(text)
    letter = can_infer(text if boxed is None else boxed, options)
    if letter is None:
        return RewardResult.failure("no_answer", None)
    return RewardResult.verdict(letter == ground_truth, letter)


def _option_dict(choices: list[str] | None, ground_truth: str) -> dict[str, str]:
    if not choices:
        raise GroundTruthError("a multiple-choice item needs its options (choices=)")
    if len(choices) > len(string.ascii_uppercase):
        raise GroundTruthError(f"{len(choices)} options: VLMEvalKit letters options A-Z only")
    options = dict(zip(string.ascii_uppercase, (str(choice) for choice in choices)))
    if ground_truth not in options:
        raise GroundTruthError(f"ground truth {ground_truth!r} is not one of the option letters {list(options)}")
    return options


def can_infer(answer: str, options: dict[str, str]) -> str | None:
    """The option letter (or "Z") VLMEvalKit reads from `answer`: by letter first, else by option text."""
    return can_infer_option(answer, options) or can_infer_text(answer, options)


def can_infer_option(answer: str, options: dict[str, str]) -> str | None:
    """A letter standing alone among the last words, a refusal ("Z"), or "answer is X".

    >>> can_infer_option("The answer is (B).", {"A": "cat", "B": "dog"})
    'B'
    >>> can_infer_option("B is right, since the dog barks loudly", {"A": "cat", "B": "dog"}) is None
    True
    """
    if "Failed to obtain answer via API" in answer:
        return None
    if any(refusal in answer for refusal in _REFUSALS):
        return "Z"
    words = answer.translate(_SEPARATORS).split()
    named = [letter for letter in options if letter in words]
    if len(named) == 1:
        # the official loop returns the first option letter present whose first occurrence is late enough
        if words.index(named[0]) > len(words) - 5:
            return named[0]
    elif not named and "Z" in words:
        return "Z"
    verbose = _VERBOSE_ANSWER.search(answer)
    if verbose and verbose.group(1).upper() in options:
        return verbose.group(1).upper()
    return None


def can_infer_text(answer: str, options: dict[str, str]) -> str | None:
    """The one option whose lower-cased text occurs in the lower-cased answer, for answers no longer than twice
    all option texts together.

    >>> can_infer_text("It is a dog.", {"A": "cat", "B": "dog"})
    'B'
    """
    answer = answer.lower()
    if len(answer) > 2 * sum(len(text) for text in options.values()):
        return None
    named = [letter for letter, text in options.items() if text.lower() in answer]
    return named[0] if len(named) == 1 else None


def judge_prompt(question: str, choices: list[str], prediction: str) -> str:
    """The prompt VLMEvalKit's judge model gets when can_infer fails (`build_prompt` with `build_option_str`,
    English questions); read the judge's reply with `can_infer`. No model is called here."""
    options = "There are several options: \n" + "".join(
        f"{letter}. {text}\n" for letter, text in zip(string.ascii_uppercase, choices))
    return ("You are an AI assistant who will help me to match an answer with several options of a single-choice "
            "question. You are provided with a question, several options, and an answer, and you need to find "
            "which option is most similar to the answer. If the meaning of all options are significantly "
            "different from the answer, output Z. Your should output a single uppercase character in A, B, C, D "
            "(if they are valid options), and Z. \n"
            "Example 1: \nQuestion: What is the main object in image?\nOptions: A. teddy bear B. rabbit C. cat "
            "D. dog\nAnswer: a cute teddy bear\nYour output: A\n"
            "Example 2: \nQuestion: What is the main object in image?\nOptions: A. teddy bear B. rabbit C. cat "
            "D. dog\nAnswer: Spider\nYour output: Z\n"
            f"Example 3: \nQuestion: {question}?\nOptions: {options}\nAnswer: {prediction}\nYour output: ")
