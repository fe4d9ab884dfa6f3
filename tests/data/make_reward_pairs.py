"""Writes reward_pairs.jsonl: labelled (answer, ground truth, type) pairs for the scorer accuracy test.

Equivalences follow math-verify's documented behaviour (fractions, decimals, percents, LaTeX spacing and commands,
intervals, sets, expressions) and the answer forms models write. Run: python tests/data/make_reward_pairs.py
"""

import json
from pathlib import Path

MATH = [  # (answer, truth, equivalent)
    ("\\frac{1}{2}", "0.5", True), ("0.5", "\\frac{1}{2}", True), ("1/2", "\\frac{1}{2}", True),
    ("\\dfrac{3}{4}", "0.75", True), ("\\tfrac{3}{4}", "\\frac{3}{4}", True), ("75\\%", "0.75", True),
    ("50\\%", "50", True), ("0.25", "25\\%", True), ("1,000", "1000", True), ("3.0", "3", True),
    ("-2", "-2.0", True), ("\\frac{-1}{3}", "-\\frac{1}{3}", True), ("2/4", "0.5", True), ("0.125", "1/8", True),
    ("\\sqrt{2}/2", "\\frac{\\sqrt{2}}{2}", True), ("\\frac{\\sqrt{3}}{3}", "\\frac{1}{\\sqrt{3}}", True),
    ("2\\sqrt{2}", "\\sqrt{8}", True), ("x+1", "1+x", True), ("2x", "x+x", True), ("x^2-1", "(x-1)(x+1)", True),
    ("\\pi", "\\pi", True), ("2\\pi", "\\pi+\\pi", True), ("[1,2)", "[1, 2)", True), ("(0,\\infty)", "(0, \\infty)", True),
    ("\\{1,2,3\\}", "\\{3,2,1\\}", True), ("\\{1, 2\\}", "\\{2, 1\\}", True), ("\\left(1,2\\right]", "(1,2]", True),
    ("\\frac{1}{2}\\,", "\\frac12", True), ("$\\frac{2}{3}$", "\\frac{2}{3}", True), ("0.333333", "\\frac{1}{3}", True),
    ("e^{2}", "e^2", True), ("\\ln(e)", "1", True), ("10^{3}", "1000", True), ("2^{10}", "1024", True),
    ("\\sin^2 x + \\cos^2 x", "1", True), ("12.50", "12.5", True), ("+5", "5", True), ("5.", "5", True),
    ("\\frac{6}{8}", "\\frac{3}{4}", True), ("\\frac{10}{4}", "2.5", True), ("x=3", "3", True),
    ("-0", "0", True), ("0.50", "\\frac{1}{2}", True), ("-\\frac{1}{2}", "-0.5", True), ("4", "\\sqrt{16}", True),
    ("\\frac{1}{4}", "0.2", False), ("0.333", "\\frac{1}{3}", False), ("1.5", "\\frac{3}{2}", True), ("3\\sqrt{3}", "\\sqrt{27}", True), ("0.1", "10\\%", True),
    ("\\frac{1}{2}", "0.6", False), ("0.5", "\\frac{1}{3}", False), ("1/3", "0.3", False), ("75\\%", "0.7", False),
    ("1,001", "1000", False), ("3.01", "3", False), ("-2", "2", False), ("\\sqrt{2}", "2", False), ("x+1", "x-1", False),
    ("2x", "x^2", False), ("[1,2)", "(1,2]", False), ("[1,2]", "[1,2)", False), ("\\{1,2\\}", "\\{1,2,3\\}", False),
    ("\\pi", "3.14", False), ("e", "2.7", False), ("2^{10}", "1000", False), ("\\frac{3}{4}", "\\frac{4}{3}", False),
    ("0", "1", False), ("100", "10", False), ("x^2", "2x", False), ("\\frac{1}{2}", "2", False), ("5", "-5", False),
    ("(0,1)", "(0,2)", False), ("12", "21", False), ("2\\sqrt{3}", "\\sqrt{6}", False), ("\\infty", "-\\infty", False),
]
CHOICE = [  # (answer, truth, choices, equivalent)
    ("B", "B", None, True), ("(B)", "B", None, True), ("B.", "B", None, True), ("b", "B", None, True),
    ("Option B", "B", None, True), ("option b", "B", None, True), ("Answer: (C)", "C", None, True),
    ("B)", "B", None, True), ("(d)", "D", None, True), ("B. 42", "B", None, True), ("(A) cat", "A", None, True),
    ("Choice A", "A", None, True), ("forty-two", "B", ["seven", "Forty two", "nine"], True),
    ("Seven", "A", ["seven", "eight"], True), ("C", "blue", ["red", "green", "blue"], True),
    ("A", "B", None, False), ("(C)", "B", None, False), ("A, B", "B", None, False), ("A and B", "A", None, False),
    ("AB", "A", None, False), ("B or C", "B", None, False), ("(A)(B)", "A", None, False), ("E", "B", None, False),
    ("Option A", "B", None, False), ("nine", "B", ["seven", "forty two", "nine"], False),
    ("A/B", "A", None, False), ("none", "A", None, False), ("A & C", "C", None, False), ("b.", "C", None, False),
]
TEXT = [
    ("Paris", "paris", True), ("The Eiffel Tower", "eiffel tower", True), ("red.", "Red", True),
    ("a cat", "cat", True), ("  New   York ", "new york", True), ("left-handed", "left handed", True),
    ("Yes", "yes", True), ("an apple", "the apple", True), ("London", "Paris", False), ("red", "blue", False),
    ("cats", "cat", False), ("no", "yes", False), ("New York City", "new york", False), ("left", "right", False),
]
COUNT = [
    ("3", "3", True), ("three", "3", True), ("Three", "3", True), ("3 squares", "3", True), ("3.0", "3", True),
    ("twenty-one", "21", True), ("21", "twenty one", True), ("1,200", "1200", True), ("zero", "0", True),
    ("4", "3", False), ("3 or 4", "3", False), ("3.5", "3", False), ("thirty", "3", False), ("many", "3", False),
    ("2 and 3", "3", False), ("-3", "3", False),
]
BBOX = [  # IoU >= 0.5 counts as accurate
    ("[0, 0, 10, 10]", "[0, 0, 10, 10]", {}, True), ("[0,0,10,10]", "[1, 1, 10, 10]", {}, True),
    ("(0, 0, 10, 12)", "[0, 0, 10, 10]", {}, True), ("[0.0, 0.0, 0.5, 0.5]", "[0, 0, 50, 50]",
                                                       {"predicted_coords": "normalized", "image_size": [100, 100]}, True),
    ("[0, 0, 500, 500]", "[0, 0, 50, 50]", {"predicted_coords": "per_mille", "image_size": [100, 100]}, True),
    ("[10, 10, 20, 20]", "[10, 10, 20, 20]", {}, True), ("[0, 0, 10, 10]", "[5, 5, 15, 15]", {}, False),
    ("[0, 0, 10, 10]", "[20, 20, 30, 30]", {}, False), ("[10, 10, 0, 0]", "[0, 0, 10, 10]", {}, False),
    ("[0, 0, 0, 10]", "[0, 0, 10, 10]", {}, False), ("[0, 0, 10]", "[0, 0, 10, 10]", {}, False),
    ("[0, 0, 100, 100]", "[0, 0, 10, 10]", {}, False),
]
POINT = [
    ("(5, 5)", "[0, 0, 10, 10]", True), ("(10, 10)", "[0, 0, 10, 10]", True), ("[0, 3]", "[0, 0, 10, 10]", True),
    ("(11, 5)", "[0, 0, 10, 10]", False), ("(5, -1)", "[0, 0, 10, 10]", False), ("(5)", "[0, 0, 10, 10]", False),
]

# Ground truths as real datasets write them (MATH-style LaTeX, benchmark-style options): (answer, truth, type, meta,
# equivalent). Several answers are ordered unless the item's metadata says `answer_order: free`.
GROUND_TRUTH_FORMS = [
    ("Paris", "\\text{Paris}", "text", {}, True), ("paris", "\\textbf{Paris}", "text", {}, True),
    ("blue", "$\\text{blue}$", "text", {}, True), ("London", "\\text{Paris}", "text", {}, False),
    ("3", "3 cm", "text", {}, True), ("4", "3 cm", "text", {}, False),
    ("B", "\\text{(B)}", "choice", {}, True), ("B", "(B)", "choice", {}, True), ("C", "C.", "choice", {}, True),
    ("(C)", "\\text{C}", "choice", {}, True), ("B", "$\\text{B}$", "choice", {}, True),
    ("A", "\\text{(B)}", "choice", {}, False), ("A", "C.", "choice", {}, False),
    ("C", "\\text{blue}", "choice", {"choices": ["red", "green", "blue"]}, True),
    ("blue", "\\text{(C)}", "choice", {"choices": ["red", "green", "blue"]}, True),
    ("red", "\\text{(C)}", "choice", {"choices": ["red", "green", "blue"]}, False),
    ("45\\%", "45\\%", "math", {}, True), ("45", "45\\%", "math", {}, True), ("0.45", "45\\%", "math", {}, True),
    ("45 percent", "45\\%", "math", {}, True), ("28", "28 percent", "math", {}, True),
    ("0.28", "28 percent", "math", {}, True), ("4.5", "45\\%", "math", {}, False), ("45", "28\\%", "math", {}, False),
    ("3", "3 \\text{ cm}", "math", {}, True), ("3 cm", "3 \\text{ cm}", "math", {}, True),
    ("3\\text{ cm}", "3 \\text{cm}", "math", {}, True), ("3 m", "3 \\text{ cm}", "math", {}, False),
    ("4", "3 \\text{ cm}", "math", {}, False), ("12", "12 \\mathrm{m}^2", "math", {}, True),
    ("45", "45^\\circ", "math", {}, True), ("45^\\circ", "45°", "math", {}, True),
    ("2.5 kg", "2.5\\text{ kg}", "math", {}, True), ("30", "45^\\circ", "math", {}, False),
    ("10", "10\\text{ inches}", "math", {}, True), ("\\frac{1}{e}", "\\frac{1}{\\mathrm{e}}", "math", {}, True),
    ("5", "$5$", "math", {}, True), ("5", "\\(5\\)", "math", {}, True),
    ("\\sqrt{2}", "\\[\\sqrt{2}\\]", "math", {}, True),
    ("6", "\\(5\\)", "math", {}, False), ("e", "\\mathrm{e}", "math", {}, True),
    ("\\frac{\\sqrt{3}}{2}", "\\dfrac{\\sqrt{3}}{2}", "math", {}, True), ("18.90", "\\$18.90", "math", {}, True),
    ("(1, 2), (2, 1)", "(1, 2), (2, 1)", "math", {}, True),
    ("(2, 1), (1, 2)", "(1, 2), (2, 1)", "math", {"answer_order": "free"}, True),
    ("(2, 1), (1, 2)", "(1, 2), (2, 1)", "math", {}, False), ("1, 2", "2, 1", "math", {"answer_order": "free"}, True),
    ("1, 2", "2, 1", "math", {}, False), ("1, 3", "1, 2", "math", {"answer_order": "free"}, False),
    ("1, 2, 3", "1, 2", "math", {"answer_order": "free"}, False),
    ("(1, 2)", "(1, 2), (2, 1)", "math", {"answer_order": "free"}, False),
    ("-1, 1", "1, -1", "math", {"answer_order": "free"}, True), ("\\frac{1}{2}, 3", "0.5, 3", "math", {}, True),
    ("12", "\\textbf{12}", "count", {}, True), ("12", "$12$", "count", {}, True),
    ("11", "\\text{12}", "count", {}, False),
    # Equal to a careful grader, not to the rules (no unit conversion, no unit synonyms): kept to measure the gap.
    ("300 cm", "3 \\text{ m}", "math", {}, True), ("5 sq ft", "5 \\text{ square feet}", "math", {}, True),
]


def rows():
    for answer, truth, same in MATH:
        yield {"answer": answer, "truth": truth, "type": "math", "meta": {}, "equivalent": same}
    for answer, truth, choices, same in CHOICE:
        yield {"answer": answer, "truth": truth, "type": "choice", "meta": {"choices": choices} if choices else {},
               "equivalent": same}
    for kind, table in (("text", TEXT), ("count", COUNT)):
        for answer, truth, same in table:
            yield {"answer": answer, "truth": truth, "type": kind, "meta": {}, "equivalent": same}
    for answer, truth, meta, same in BBOX:
        yield {"answer": answer, "truth": truth, "type": "bbox", "meta": meta, "equivalent": same}
    for answer, truth, same in POINT:
        yield {"answer": answer, "truth": truth, "type": "point", "meta": {}, "equivalent": same}
    for answer, truth, kind, meta, same in GROUND_TRUTH_FORMS:
        yield {"answer": answer, "truth": truth, "type": kind, "meta": meta, "equivalent": same,
               "group": "ground_truth_forms"}


if __name__ == "__main__":
    target = Path(__file__).with_name("reward_pairs.jsonl")
    target.write_text("".join(json.dumps(row) + "\n" for row in rows()))
    print(f"wrote {sum(1 for _ in rows())} pairs to {target}")
