"""Synthetic RL-ready items for the paper's eight domains (plus `counting`), with exactly known answers.

Every image is a grid of 14-px cells and every object fills whole cells ("patch-aligned"), so the answer is
visible at the resolution a tiny VLM sees (free-placed objects stayed at chance at 56 px). Items are
deterministic in (seed, domain, index), so any worker can generate any slice of a pool. `difficulty` (1-3) adds
distractors, widens ranges or picks a harder question form; a list of difficulties cycles over each domain's items,
so one pool spans easy and hard items (what pass-rate filtering sorts); each domain's question text depends only on its
template and on variables drawn independently of the answer, so the text alone cannot beat chance.
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace

from PIL import Image

from visiong1.types import PromptItem

PATCH = 14
COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (50, 80, 230), "yellow": (230, 210, 40),
           "white": (240, 240, 240)}
GREY = (128, 128, 128)
COUNT_QUESTION = "How many squares are in the image?"
SYSTEM_PROMPT = "Answer the question. Put the final answer in \\boxed{}."


def encode_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


class Grid:
    """A square image of `side` x `side` cells of PATCH pixels; cells are numbered row-major."""

    def __init__(self, image_size: int, background: tuple[int, int, int] = (0, 0, 0)):
        self.side = image_size // PATCH
        self.image = Image.new("RGB", (image_size, image_size), background)

    def fill(self, cell: int, colour: tuple[int, int, int]) -> None:
        row, col = divmod(cell, self.side)
        self.image.paste(colour, (col * PATCH, row * PATCH, (col + 1) * PATCH, (row + 1) * PATCH))

    def box(self, cell: int) -> str:
        """The cell's pixel box `[x1, y1, x2, y2]` (absolute coordinates, right/bottom edges exclusive)."""
        row, col = divmod(cell, self.side)
        return f"[{col * PATCH}, {row * PATCH}, {(col + 1) * PATCH}, {(row + 1) * PATCH}]"

    def cell(self, row: int, col: int) -> int:
        return row * self.side + col

    def texture(self, rng: random.Random, base: tuple[int, int, int], spread: int) -> None:
        """Shade every cell `base` plus one random grey offset in [-spread, spread]: answer-irrelevant variation, so
        a domain with few layouts still has thousands of distinct images (held-out items unseen in training)."""
        for cell in range(self.side**2):
            offset = rng.randint(-spread, spread)
            self.fill(cell, tuple(min(255, max(0, channel + offset)) for channel in base))

    def png(self) -> bytes:
        return encode_png(self.image)


@dataclass
class Draft:
    """A generated question before it gets an id: `template` names the question form (chance is per template)."""

    template: str
    question: str
    images: list[bytes]
    answer: str
    answer_type: str
    choices: list[str] | None = None
    metadata: dict = field(default_factory=dict)


def _letter(index: int) -> str:
    return chr(ord("A") + index)


def counting(rng: random.Random, image_size: int, difficulty: int) -> Draft:
    """Squares of random colours, one per cell; how many? (`count`)."""
    grid = Grid(image_size)
    count = rng.randint(1, min(3 + 3 * difficulty, grid.side**2))
    for cell in rng.sample(range(grid.side**2), count):
        grid.fill(cell, COLOURS[rng.choice(sorted(COLOURS))])
    return Draft("count", COUNT_QUESTION, [grid.png()], str(count), "count")


def infographic(rng: random.Random, image_size: int, difficulty: int) -> Draft:
    """A bar chart, one bar per colour, bars one cell wide; read one bar's height (`count`)."""
    grid = Grid(image_size, (255, 255, 255))
    bars = min(grid.side, 1 + difficulty)
    colours = rng.sample(sorted(set(COLOURS) - {"white"}), bars)
    heights = {}
    for column, colour in zip(sorted(rng.sample(range(grid.side), bars)), colours):
        heights[colour] = rng.randint(1, grid.side)
        for row in range(grid.side - heights[colour], grid.side):
            grid.fill(grid.cell(row, column), COLOURS[colour])
    asked = rng.choice(colours)
    question = f"The bar chart has one bar per colour. How tall is the {asked} bar, in cells?"
    return Draft("bar_value", question, [grid.png()], str(heights[asked]), "count")


MATH_FORMS = {1: ("plus", "How many red and blue squares are there together?", lambda a, b: a + b),
              2: ("minus", "What is the number of red squares minus the number of blue squares?", lambda a, b: a - b),
              3: ("times", "What is the number of red squares times the number of blue squares?", lambda a, b: a * b)}


def mathematical(rng: random.Random, image_size: int, difficulty: int) -> Draft:
    """Red and blue squares; arithmetic on their counts, the operation set by difficulty (`math`)."""
    grid = Grid(image_size)
    limit = max(1, min(4, grid.side**2 // 2))
    red, blue = rng.randint(1, limit), rng.randint(1, limit)
    cells = rng.sample(range(grid.side**2), red + blue)
    for index, cell in enumerate(cells):
        grid.fill(cell, COLOURS["red"] if index < red else COLOURS["blue"])
    name, question, operation = MATH_FORMS[difficulty]
    return Draft(name, question, [grid.png()], str(operation(red, blue)), "math")


SPATIAL_CHOICES = ["left of the blue square", "right of the blue square", "above the blue square",
                   "below the blue square"]


def spatial(rng: random.Random, image_size: int, difficulty: int) -> Draft:
    """A red and a blue square in one row or column (plus grey distractors) on a dark textured floor; where is
    red? (`choice`)."""
    grid = Grid(image_size)
    grid.texture(rng, (24, 24, 24), 24)
    relation = rng.randrange(4)
    line, near, far = rng.randrange(grid.side), *sorted(rng.sample(range(grid.side), 2))
    first, second = (near, far) if relation in (0, 2) else (far, near)  # red's and blue's position along the line
    horizontal = relation < 2
    red = grid.cell(line, first) if horizontal else grid.cell(first, line)
    blue = grid.cell(line, second) if horizontal else grid.cell(second, line)
    free = [cell for cell in range(grid.side**2) if cell not in (red, blue)]
    for cell in rng.sample(free, min(len(free), difficulty - 1)):
        grid.fill(cell, GREY)
    grid.fill(red, COLOURS["red"])
    grid.fill(blue, COLOURS["blue"])
    return Draft("relation", "Where is the red square?", [grid.png()], _letter(relation), "choice",
                 list(SPATIAL_CHOICES))


def cross_image(rng: random.Random, image_size: int, difficulty: int) -> Draft:
    """Two images with different numbers of squares; which has more? (`choice`, two images)."""
    limit = min(2 + 2 * difficulty, (image_size // PATCH) ** 2)
    counts = rng.sample(range(1, limit + 1), 2)
    images = []
    for count in counts:
        grid = Grid(image_size)
        for cell in rng.sample(range(grid.side**2), count):
            grid.fill(cell, COLOURS[rng.choice(sorted(COLOURS))])
        images.append(grid.png())
    answer = _letter(0 if counts[0] > counts[1] else 1)
    return Draft("more_squares", "Which image has more squares?", images, answer, "choice",
                 ["the first image", "the second image"])


def gui(rng: random.Random, image_size: int, difficulty: int) -> Draft:
    """An app screen: a title bar and coloured buttons; click (`point`) or locate (`bbox`) one button."""
    grid = Grid(image_size, (235, 235, 235))
    for col in range(grid.side):
        grid.fill(grid.cell(0, col), (60, 60, 70))  # title bar: buttons never sit there
    colours = rng.sample(sorted(set(COLOURS) - {"white"}), min(4, 1 + difficulty))
    cells = rng.sample(range(grid.side, grid.side**2), len(colours))
    for colour, cell in zip(colours, cells):
        grid.fill(cell, COLOURS[colour])
    target = rng.randrange(len(colours))
    meta = {"coords": "absolute", "image_size": [image_size, image_size]}
    if rng.random() < 0.5:
        question = f"Click the {colours[target]} button. Answer with the point (x, y) in pixels."
        return Draft("click", question, [grid.png()], grid.box(cells[target]), "point", metadata=meta)
    question = f"Locate the {colours[target]} button. Answer with its box [x1, y1, x2, y2] in pixels."
    return Draft("locate", question, [grid.png()], grid.box(cells[target]), "bbox", metadata=meta)


def medical(rng: random.Random, image_size: int, difficulty: int) -> Draft:
    """A SYNTHETIC greyscale "scan" (not clinical data) with bright lesion cells; count (`count`) or locate
    the single lesion (`bbox`). Difficulty raises the background noise."""
    grid = Grid(image_size)
    noise = 40 + 30 * difficulty
    for cell in range(grid.side**2):
        level = rng.randint(20, noise)
        grid.fill(cell, (level, level, level))
    meta = {"synthetic": True, "note": "synthetic scan, not clinical data"}
    if rng.random() < 0.5:
        lesions = rng.sample(range(grid.side**2), rng.randint(1, min(2 + difficulty, grid.side**2)))
        for cell in lesions:
            grid.fill(cell, (235, 235, 235))
        question = "In this synthetic scan, how many bright lesions are there?"
        return Draft("count_lesions", question, [grid.png()], str(len(lesions)), "count", metadata=meta)
    lesion = rng.randrange(grid.side**2)
    grid.fill(lesion, (235, 235, 235))
    question = "In this synthetic scan, locate the bright lesion. Answer with its box [x1, y1, x2, y2] in pixels."
    meta |= {"coords": "absolute", "image_size": [image_size, image_size]}
    return Draft("locate_lesion", question, [grid.png()], grid.box(lesion), "bbox", metadata=meta)


def common_sense(rng: random.Random, image_size: int, difficulty: int) -> Draft:
    """An outdoor scene: textured sky with sun or moon, ground of grass or snow; day or night? snow or grass? (`choice`).
    From difficulty 2 the sky is grey either way (only sun vs moon tells); at 3, clouds are added."""
    night, snow = rng.random() < 0.5, rng.random() < 0.5
    sky = (128, 140, 150) if difficulty >= 2 else ((15, 20, 60) if night else (90, 160, 230))
    grid = Grid(image_size)
    grid.texture(rng, sky, 12)
    ground_row = grid.side - 1
    for col in range(grid.side):
        grid.fill(grid.cell(ground_row, col), (245, 245, 250) if snow else (40, 160, 50))
    sky_cells = list(range(ground_row * grid.side))
    body, *clouds = rng.sample(sky_cells, 1 + (2 if difficulty == 3 else 0))
    grid.fill(body, (250, 250, 250) if night else (250, 200, 30))
    for cell in clouds:
        grid.fill(cell, (200, 200, 205))
    if rng.random() < 0.5:
        return Draft("day_or_night", "Is this scene during the day or at night?", [grid.png()],
                     _letter(1 if night else 0), "choice", ["day", "night"])
    return Draft("ground", "Is the ground covered in snow or grass?", [grid.png()], _letter(0 if snow else 1),
                 "choice", ["snow", "grass"])


THERMOMETER_STEP = {1: 10, 2: 5, 3: 2}


def science(rng: random.Random, image_size: int, difficulty: int) -> Draft:
    """A thermometer column filled up to some cell on a textured pale wall; read the temperature from the stated
    scale (`math`)."""
    grid = Grid(image_size)
    grid.texture(rng, (240, 240, 240), 15)
    column, level = rng.randrange(grid.side), rng.randint(1, grid.side)
    step = THERMOMETER_STEP[difficulty]  # fixed per difficulty: a step drawn per item would narrow the answers
    for row in range(grid.side):
        grid.fill(grid.cell(row, column), (220, 40, 40) if row >= grid.side - level else (200, 200, 200))
    question = (f"The thermometer's scale starts at 0 and each cell is {step} degrees. "
                "What temperature does it show?")
    return Draft("thermometer", question, [grid.png()], str(level * step), "math")


GENERATORS: dict[str, Callable[[random.Random, int, int], Draft]] = {
    "counting": counting, "infographic": infographic, "mathematical": mathematical, "spatial": spatial,
    "cross_image": cross_image, "gui": gui, "medical": medical, "common_sense": common_sense, "science": science}


def corrupt(draft: Draft, rng: random.Random, donor_for: Callable[[int], Draft]) -> Draft:
    """Swap in the answer or the images of a same-template donor whose answer differs; flag the kind."""
    kind = rng.choice(["wrong_answer", "swapped_image"])
    for attempt in range(64):
        donor = donor_for(attempt)
        if donor.template == draft.template and donor.answer != draft.answer:
            changed = {"answer": donor.answer} if kind == "wrong_answer" else {"images": donor.images}
            return replace(draft, **changed, metadata={**draft.metadata, "corrupted": kind})
    return draft  # a template with a single possible answer cannot be corrupted


def item_difficulty(difficulty: int | Sequence[int], index: int) -> int:
    """Difficulty of a domain's item `index`: the knob itself, or `difficulty[index % len(difficulty)]`.

    >>> item_difficulty(2, 7), [item_difficulty([1, 3], i) for i in range(3)]
    (2, [1, 3, 1])
    """
    return difficulty if isinstance(difficulty, int) else difficulty[index % len(difficulty)]


def synthetic_item(domain: str, index: int, seed: int = 0, image_size: int = 56,
                   difficulty: int | Sequence[int] = 1, corrupt_fraction: float = 0.0) -> PromptItem:
    """Item `index` of `domain`: the same arguments give the same item in any process."""
    difficulty = item_difficulty(difficulty, index)
    generator = GENERATORS[domain]
    rng = random.Random(f"{seed}:{domain}:{index}")
    draft = generator(rng, image_size, difficulty)
    if corrupt_fraction and rng.random() < corrupt_fraction:
        draft = corrupt(draft, rng, lambda attempt: generator(random.Random(f"{seed}:{domain}:{index}:donor{attempt}"),
                                                              image_size, difficulty))
    metadata = {**draft.metadata, "template": draft.template, "difficulty": difficulty}
    return PromptItem(id=f"synthetic-{domain}-s{seed}-{index:07d}", source=f"synthetic/{domain}", domain=domain,
                      question=draft.question, images=draft.images, answer=draft.answer,
                      answer_type=draft.answer_type, choices=draft.choices, metadata=metadata)


def generate_pool(domains: list[str], num_items: int, image_size: int = 56, seed: int = 0,
                  difficulty: int | Sequence[int] = 1, corrupt_fraction: float = 0.0) -> list[PromptItem]:
    """`num_items` items spread round-robin over `domains`, reproducible from `seed`."""
    return list(iter_pool(domains, num_items, image_size, seed, difficulty, corrupt_fraction))


def iter_pool(domains: list[str], num_items: int, image_size: int = 56, seed: int = 0,
              difficulty: int | Sequence[int] = 1, corrupt_fraction: float = 0.0) -> Iterator[PromptItem]:
    """The items of `generate_pool`, one at a time (a pool written to storage never exists whole in memory)."""
    unknown = sorted(set(domains) - set(GENERATORS))
    if unknown:
        raise ValueError(f"unknown synthetic domains {unknown}; known: {sorted(GENERATORS)}")
    for i in range(num_items):
        yield synthetic_item(domains[i % len(domains)], i // len(domains), seed, image_size, difficulty,
                             corrupt_fraction)


def tokenizer_corpus() -> list[str]:
    """Text the tiny tokenizer is trained on: every generator's questions and options, answers, answer formats."""
    lines = [SYSTEM_PROMPT, COUNT_QUESTION, "The answer is", "(x, y)", "[x1, y1, x2, y2]"]
    lines += [f"\\boxed{{{n}}}" for n in range(-20, 200)] + list(COLOURS) + ["left", "right", "yes", "no"]
    for domain in GENERATORS:
        for index in range(40):
            item = synthetic_item(domain, index, difficulty=1 + index % 3)
            lines += [item.question, *(item.choices or []), f"\\boxed{{{item.answer}}}"]
    return lines * 20
