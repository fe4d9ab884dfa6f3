"""MathVerse (testmini): the official pipeline's rule-based scoring path, its `--quick_match` exact match.

Source: ZrrSkywalker/MathVerse @ 937b090597aeafb8e82b35d310a4bc5b9e2ea29d, `evaluation/score_answer_s2.py`
(match_answer: with quick_match, `'1' if inst['answer'] == inst['extraction'] else '0'`),
`evaluation/extract_answer_s1.py` (create_test_prompt) and `evaluation/prompts.py` (demo_prompt_extract,
demo_prompt_score).

The official default is two GPT calls: one extracts the answer from the response, one judges it against the
standard answer. The official rule-based option is an exact, case-sensitive string match of the extraction with the
ground truth (so `B` matches a multi-choice `B`, while `(B)`, `b` or the option's text do not).

Deviations, forced by running without a judge model:
- No GPT extraction: the last `\\boxed{}` content is the extraction (the whole response where there is none), with
  surrounding whitespace stripped (a GPT extractor returns none).
- No GPT judgement: the official `--quick_match` exact match decides. Callers who want the official judge build its
  prompts with `extraction_prompt` and `judgement_prompt` (no network calls here).
"""

from __future__ import annotations

from visiong1.rewards.base import GroundTruthError, RewardResult
from visiong1.rewards.extract import extract_boxed

# Verbatim from evaluation/prompts.py: the stage-1 (extraction) and stage-2 (judgement) few-shot prompts.
EXTRACTION_DEMO_PROMPT = """
I am providing you a response from a model to a math problem, termed 'Model Response'. You should extract the answer from the response as 'Extracted Answer'. Directly output the extracted answer with no explanation.

1.
Model response: 'Rounded to two decimal places, the perimeter of the sector is approximately:\n\n(-2, 1)'
Extracted Answer: (-2, 1)

2.
Model response: 'at those points.\n\nTherefore, the correct option that represents the meaning of the intersection points of the graphs is:\n\nD. They give the solutions to the equation $f(t)=g(t)$.",'
Extracted Answer: D

3.
Model response: ' at 1 (there's a closed circle at y = 1), the range in interval notation is \\((-4, 1]\\).\n\nFinal values:\nDomain: \\((-3, 3]\\)\nRange: \\((-4, 1]\\)'
Extracted Answer: Domain: \\((-3, 3]\\)\nRange: \\((-4, 1]\\)

4.
Model response: 'As it stands, I cannot provide the correct option letter because there isn't enough information to solve for 'y'.'
Extracted Answer: null

5.
Model response: 'Given that AB = 17.6 meters, we can now substitute into the equation:\n\nd = 17.6 / cos(38\u00b0)\n\nTherefore, to one decimal place, the distance d between Ned and Bart is approximately 22.3 meters.'
Extracted answer: 22.3

6.
Model response:  have all the coefficients for the quadratic function:\n\\( f(x) = ax^2 + bx + c \\)\n\\( f(x) = -1x^2 - 2x + 1 \\)\n\nTherefore, the equation for the graphed function \\( f \\) is:\n\\( f(x) = -x^2 - 2x + 1 \\)"'
Extracted answer: f(x) = -x^2 - 2x + 1

7.
"""

JUDGEMENT_DEMO_PROMPT = """
Below are two answers to a math question. Question is [Question], [Standard Answer] is the standard answer to the question, and [Model_answer] is the answer extracted from a model's output to this question.  Determine whether these two answers are consistent.
Please note that only when the [Model_answer] completely matches the [Standard Answer] means they are consistent. For non-multiple-choice questions, if the meaning is expressed in the same way, it is also considered consistent, for example, 0.5m and 50cm.
If they are consistent, Judement is 1; if they are different, Judement is 0.

[Question]: Write the set of numbers represented on the number line in interval notation.
[Standard Answer]: (-2,1]
[Model_answer] : Extracted Answer: \\((-2, 1)\\)
Judgement: 0

[Question]: As shown in the figure, circle O has a radius 1.0, if angle BAC = 60.0, then the length of BC is ()\nChoices:\nA:2\nB:2\u221a{{3}}\nC:\u221a{{3}}\nD:2\u221a{{2}}
[Standard Answer]: C
[Model_answer] : B:2\u221a{{3}}
Judgement: 0

[Question]: Find the domain and range of the function f using interval notation.
[Standard Answer]: domain: [-4, 0) and range: (-3, 1]
[Model_answer] : Range: \\((-4, 1]\\)
Judgement: 0

[Question]: As shown in the figure, circle O has a radius 1.0, if angle BAC = 60.0, then the length of BC is ()\nChoices:\nA:2\nB:2\u221a{{3}}\nC:\u221a{{3}}\nD:2\u221a{{2}}
[Standard Answer]: C
[Model_answer] : null
Judgement: 0

[Question]: Given the graph of the ellipse that intersects with x-axis at 9 and -9 and with y-axis at 3 and -3, determine its equation.A. \\frac{{x^2}}{{81}} + \\frac{{y^2}}{{9}} = 1 B. Can not determine.\n
[Standard Answer]: A
[Model_answer] : \\frac{{x^2}}{{81}} + \\frac{{y^2}}{{9}} = 1
Judgement: 1

[Question]: {question}
[Standard Answer]: {gt}
[Model_answer] : {extraction}
Judgement: """


def extraction_prompt(response: str) -> str:
    """The official stage-1 prompt (GPT extracts the answer from `response`)."""
    return f"{EXTRACTION_DEMO_PROMPT.strip()}\n\nModel response: '{response}'\nExtracted Answer: "


def judgement_prompt(question_for_eval: str, ground_truth: str, extraction: str) -> str:
    """The official stage-2 prompt (GPT judges `extraction` against the standard answer; it replies 0 or 1)."""
    return JUDGEMENT_DEMO_PROMPT.strip().format(question=question_for_eval, gt=ground_truth, extraction=extraction)


def score_mathverse(response: str, ground_truth: str, **meta) -> RewardResult:
    """Correct when the extraction (last box content, else the whole response, stripped) equals the ground truth
    exactly, as the official `--quick_match` decides. Metadata is accepted and unused."""
    if not ground_truth.strip():
        raise GroundTruthError("MathVerse ground truth is empty")
    boxed = extract_boxed(response)
    extraction = (response if boxed is None else boxed).strip()
    if not extraction:
        return RewardResult.failure("no_answer", None)
    return RewardResult.verdict(extraction == ground_truth, extraction)
