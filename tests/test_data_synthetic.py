"""Synthetic generators: answers verified by the reward scorers and by reading pixels, patch alignment,
determinism, corruption, and that question text alone cannot beat chance."""

import dataclasses
import io
import math
import random
import re
from collections import Counter, defaultdict

import numpy as np
import pytest
from PIL import Image

from visiong1.config import SYNTHETIC_DOMAINS, ConfigError, load_config
from visiong1.data.synthetic import GENERATORS, PATCH, Grid, generate_pool, synthetic_item
from visiong1.eval.heldout import distinct_synthetic, held_out_hashes, sample_per_domain, synthetic_held_out
from visiong1.training.warm_start import warm_start_pool
from visiong1.rewards import score

EIGHT_DOMAINS = {"infographic", "mathematical", "spatial", "cross_image", "gui", "medical", "common_sense", "science"}


def cells(image_bytes: bytes) -> np.ndarray:
    """The image as a grid of cell colours, shape (rows, cols, 3), read from each cell's centre pixel."""
    pixels = np.asarray(Image.open(io.BytesIO(image_bytes)).convert("RGB"))
    centre = PATCH // 2
    return pixels[centre::PATCH, centre::PATCH]


def perfect_response(item) -> str:
    return f"\\boxed{{{item.reference_answer()}}}"


def test_every_paper_domain_has_a_generator():
    assert EIGHT_DOMAINS <= set(GENERATORS) and set(GENERATORS) == set(SYNTHETIC_DOMAINS)


@pytest.mark.parametrize("domain", sorted(GENERATORS))
@pytest.mark.parametrize("difficulty", [1, 2, 3])
def test_scorers_accept_the_answer_and_reject_other_answers(domain, difficulty):
    items = generate_pool([domain], 40, difficulty=difficulty, seed=3)
    for item in items:
        right = score(perfect_response(item), item.answer, item.answer_type, **item.scorer_meta())
        assert right.accuracy == 1.0, (item.id, item.answer, right)
    by_template = defaultdict(list)
    for item in items:
        by_template[item.metadata["template"]].append(item)
    checked = 0
    for group in by_template.values():
        for item, other in zip(group, group[1:]):
            if other.answer != item.answer:
                wrong = score(f"\\boxed{{{other.answer}}}", item.answer, item.answer_type, **item.scorer_meta())
                if item.answer_type != "bbox":  # a different box may still overlap; IoU decides
                    assert wrong.accuracy == 0.0, (item.id, item.answer, other.answer)
                checked += 1
    assert checked > 0


@pytest.mark.parametrize("domain", sorted(GENERATORS))
def test_content_is_patch_aligned(domain):
    """Every 14-px cell is one flat colour: the answer is visible at the resolution a tiny VLM sees."""
    for item in generate_pool([domain], 12, difficulty=3, image_size=56):
        for data in item.images:
            pixels = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)
            side = pixels.shape[0] // PATCH
            blocks = pixels.reshape(side, PATCH, side, PATCH, 3)
            assert (blocks.max(axis=(1, 3)) == blocks.min(axis=(1, 3))).all(), item.id


BLACK = np.array([0, 0, 0])


def test_counting_answers_match_the_non_black_cells():
    for item in generate_pool(["counting"], 50, seed=5, difficulty=2):
        grid = cells(item.images[0])
        assert int((grid != BLACK).any(axis=-1).sum()) == int(item.answer)


def test_spatial_answers_match_where_the_red_and_blue_cells_are():
    for item in generate_pool(["spatial"], 50, seed=6, difficulty=2):
        grid = cells(item.images[0]).astype(int)
        red = np.argwhere((grid[..., 0] > 200) & (grid[..., 1] < 80))[0]
        blue = np.argwhere((grid[..., 2] > 200) & (grid[..., 0] < 80))[0]
        (dy, dx) = red - blue
        truth = "left of" if dx < 0 else "right of" if dx > 0 else "above" if dy < 0 else "below"
        assert item.choices[ord(item.answer) - ord("A")].startswith(truth)


def test_thermometer_readings_match_the_filled_cells():
    for item in generate_pool(["science"], 40, seed=7, difficulty=2):
        grid = cells(item.images[0]).astype(int)
        filled = int(((grid[..., 0] > 200) & (grid[..., 1] < 80)).sum())
        step = int(re.search(r"each cell is (\d+) degrees", item.question).group(1))
        assert filled * step == int(item.answer)


def test_gui_boxes_enclose_the_named_button():
    for item in generate_pool(["gui"], 40, seed=8, difficulty=3):
        colour = re.search(r"the (\w+) button", item.question).group(1)
        x1, y1, x2, y2 = (int(v) for v in re.findall(r"\d+", item.answer))
        patch = np.asarray(Image.open(io.BytesIO(item.images[0])).convert("RGB"))[y1:y2, x1:x2]
        expected = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (50, 80, 230), "yellow": (230, 210, 40)}
        assert (patch == expected[colour]).all(), item.id


def test_items_are_deterministic_per_seed_and_index():
    first = synthetic_item("gui", 17, seed=4, difficulty=2)
    assert synthetic_item("gui", 17, seed=4, difficulty=2) == first
    assert synthetic_item("gui", 17, seed=5, difficulty=2).images != first.images or \
        synthetic_item("gui", 17, seed=5, difficulty=2).answer != first.answer


def test_corruption_hits_the_asked_fraction_and_is_flagged():
    items = generate_pool(["counting"], 600, seed=9, corrupt_fraction=0.2)
    corrupted = [item for item in items if item.metadata.get("corrupted")]
    assert 0.14 < len(corrupted) / len(items) < 0.26
    assert Counter(item.metadata["corrupted"] for item in corrupted).keys() == {"wrong_answer", "swapped_image"}
    for item in corrupted:  # the flag is true: the pixels no longer show the stated answer
        assert int((cells(item.images[0]) != BLACK).any(axis=-1).sum()) != int(item.answer)
    clean = [item for item in items if not item.metadata.get("corrupted")]
    assert all(int((cells(i.images[0]) != BLACK).any(axis=-1).sum()) == int(i.answer) for i in clean)


def tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def naive_bayes_accuracy(train, test) -> float:
    """Multinomial naive Bayes from question + option tokens to the answer (Laplace smoothing)."""
    label_counts, token_counts, vocabulary = Counter(), defaultdict(Counter), set()
    for item in train:
        words = tokens(item.question + " " + " ".join(item.choices or []))
        label_counts[item.answer] += 1
        token_counts[item.answer].update(words)
        vocabulary.update(words)

    def log_posterior(label, words):
        total = sum(token_counts[label].values())
        return math.log(label_counts[label]) + sum(
            math.log((token_counts[label][w] + 1) / (total + len(vocabulary))) for w in words)

    hits = 0
    for item in test:
        words = tokens(item.question + " " + " ".join(item.choices or []))
        hits += max(label_counts, key=lambda label: log_posterior(label, words)) == item.answer
    return hits / len(test)


def majority_per_template_accuracy(train, test) -> float:
    """Chance: the most frequent training answer of each question template (what knowing the form gives)."""
    best = {template: Counter(i.answer for i in train if i.metadata["template"] == template).most_common(1)[0][0]
            for template in {i.metadata["template"] for i in train}}
    return sum(best.get(item.metadata["template"]) == item.answer for item in test) / len(test)


@pytest.mark.parametrize("domain", sorted(GENERATORS))
def test_question_text_alone_cannot_beat_chance(domain):
    """A model that sees the question but a blank image (here: naive Bayes on its tokens, trained on 600 items)
    does no better on 300 held-out items than answering each template's most common answer."""
    items = generate_pool([domain], 900, seed=11, difficulty=2)
    train, test = items[:600], items[600:]
    text_only, chance = naive_bayes_accuracy(train, test), majority_per_template_accuracy(train, test)
    assert text_only <= chance + 0.06, (domain, text_only, chance)


def test_the_leak_check_catches_a_question_that_hints_at_the_answer():
    items = generate_pool(["counting"], 900, seed=11)
    leaky = [dataclasses.replace(i, question=i.question + (" many" if int(i.answer) > 3 else " few")) for i in items]
    assert naive_bayes_accuracy(leaky[:600], leaky[600:]) > majority_per_template_accuracy(leaky[:600], leaky[600:]) + 0.06


@pytest.mark.parametrize("domain", sorted(EIGHT_DOMAINS))
def test_every_domain_has_200_distinct_held_out_items_at_56_px(domain):
    """The demo's held-out set (200 per domain) is 200 distinct items; a domain with a few hundred layouts
    (spatial, common_sense, science) gets answer-irrelevant texture so that a training pool can avoid them all."""
    held_out = synthetic_held_out([domain], 200, image_size=56, seed=0, difficulty=1)
    assert len(held_out) == 200 and len(held_out_hashes(held_out)) == 200
    pool = generate_pool([domain], 400, image_size=56, seed=0)
    assert len(held_out_hashes(pool) - held_out_hashes(held_out)) > 300


def test_the_warm_start_never_sees_a_held_out_item():
    data = load_config(None, [f"data.domains=[{','.join(sorted(EIGHT_DOMAINS))}]"]).data
    held_out = held_out_hashes(synthetic_held_out(data.domains, 200, data.image_size, data.seed, data.difficulty))
    unfiltered = held_out_hashes(warm_start_pool(data, 3200, held_out_per_domain=0))
    assert unfiltered & held_out  # the generators do repeat held-out content, so the filter has work to do
    assert not held_out_hashes(warm_start_pool(data, 3200, held_out_per_domain=200)) & held_out


def test_synthetic_influence_targets_are_clean_distinct_and_avoid_the_excluded_content():
    held_out = held_out_hashes(synthetic_held_out(["counting", "gui"], 32, 56, seed=0, difficulty=1))
    targets = distinct_synthetic(["counting", "gui"], 32, 56, seed=7, difficulty=1, exclude=frozenset(held_out))
    assert Counter(item.domain for item in targets) == {"counting": 32, "gui": 32}
    assert len(held_out_hashes(targets)) == 64 and not held_out_hashes(targets) & held_out
    assert not any(item.metadata.get("corrupted") for item in targets)


def test_sample_per_domain_takes_at_most_the_count_of_each_domain_reproducibly():
    items = generate_pool(["counting", "gui"], 20, seed=0)[:13]  # 7 counting, 6 gui
    chosen = sample_per_domain(items, 5, seed=1)
    assert Counter(item.domain for item in chosen) == {"counting": 5, "gui": 5}
    assert chosen == sample_per_domain(items, 5, seed=1) != sample_per_domain(items, 5, seed=2)
    assert [item.id for item in chosen] == [item.id for item in items if item in chosen]  # input order kept
    assert len(sample_per_domain(items, 50, seed=1)) == 13


def test_texture_keeps_cells_flat_and_in_range():
    grid = Grid(56)
    grid.texture(random.Random(0), (250, 10, 128), 20)
    pixels = np.asarray(grid.image).astype(int)
    assert pixels.min() >= 0 and pixels.max() <= 255 and len(np.unique(cells(grid.png()).reshape(-1, 3), axis=0)) > 1


def test_a_difficulty_list_cycles_over_each_domains_items():
    items = generate_pool(["mathematical", "science"], 60, seed=3, difficulty=[1, 3])
    for domain in ("mathematical", "science"):
        mine = [item for item in items if item.domain == domain]
        assert [item.metadata["difficulty"] for item in mine[:4]] == [1, 3, 1, 3]
    assert {item.metadata["template"] for item in items if item.domain == "mathematical"} == {"plus", "times"}
    assert synthetic_item("science", 4, seed=3, difficulty=[1, 3]) == synthetic_item("science", 4, seed=3, difficulty=1)


@pytest.mark.parametrize("value, message", [("[]", "at least 1 item"), ("[1,4]", "less than or equal to 3")])
def test_a_bad_difficulty_list_is_a_config_error(value, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [f"data.difficulty={value}"])
