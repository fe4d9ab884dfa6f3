"""Conversion rules and image validation: every rule and every rejection reason, on items built here."""

import io

import pytest
from PIL import Image

from visiong1.config import DataConfig, ImagePolicyConfig
from visiong1.data.curate import curate
from visiong1.data.images import normalise_image
from visiong1.data.rules import (check_verifiable, choice_to_free_form, conversion_rules, count_sub_questions,
                                 infer_answer_type, normalise_choices, reject_multiple_questions)
from visiong1.data.schema import Candidate, Rejected
from visiong1.rewards import score

POLICY = ImagePolicyConfig(min_side=28, max_aspect_ratio=20, min_pixels=56 * 56, max_pixels=112 * 112)


def encoded(image: Image.Image, fmt: str = "PNG", **save) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save)
    return buffer.getvalue()


def rgb(size=(56, 56), colour=(200, 30, 30)) -> Image.Image:
    return Image.new("RGB", size, colour)


def candidate(**fields) -> Candidate:
    base = dict(source="unit", domain="science", question="What is shown?", answer="4", answer_type=None,
                images=[encoded(rgb())])
    return Candidate(**{**base, **fields})


def reason_of(call) -> str:
    with pytest.raises(Rejected) as caught:
        call()
    return caught.value.reason


# --- conversion rules ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("answer", ["B", "(B)", "b", "Option B", "B. whale", "whale", "Whale"])
def test_choice_answers_become_letters_and_options_lose_prefixes(answer):
    item = normalise_choices(candidate(answer=answer, choices=["A. shark", "(B) whale", "C) trout"]))
    assert (item.answer, item.answer_type, item.choices) == ("B", "choice", ["shark", "whale", "trout"])


@pytest.mark.parametrize("answer", ["D", "A or B", "dolphin", "AB"])
def test_choice_answers_naming_no_single_option_are_rejected(answer):
    assert reason_of(lambda: normalise_choices(candidate(answer=answer, choices=["shark", "whale", "trout"]))) \
        == "choice_unresolved"


def test_answer_type_is_inferred_and_unknown_types_rejected():
    assert infer_answer_type(candidate(answer="3.5")).answer_type == "math"
    assert infer_answer_type(candidate(answer="a cat")).answer_type == "text"
    assert infer_answer_type(candidate(answer="B", choices=["x", "y"])).answer_type == "choice"
    assert reason_of(lambda: infer_answer_type(candidate(answer_type="essay"))) == "unknown_answer_type"


@pytest.mark.parametrize("question, parts", [
    ("How many apples are there?", 1), ("What colour is it? How big is it?", 2),
    ("(1) Find the area. (2) Find the perimeter.", 2), ("1. Name the shape 2. Count its sides", 2),
    ("Which animal is it? a) cat b) dog", 1), ("Compute 2 + 3.", 0)])
def test_sub_questions_are_counted(question, parts):
    assert count_sub_questions(question) == parts


def test_questions_with_several_sub_questions_are_rejected():
    assert reason_of(lambda: reject_multiple_questions(candidate(question="What is x? And y?"))) == "multiple_questions"
    assert reject_multiple_questions(candidate(question="What is x?")).question == "What is x?"


def test_multiple_choice_is_rewritten_as_free_form_with_the_option_text():
    item = choice_to_free_form(normalise_choices(candidate(answer="C", choices=["1", "2", "12"])))
    assert (item.answer, item.answer_type, item.choices) == ("12", "math", None)
    assert item.metadata["rewritten_from_choice"] == "C"
    text = choice_to_free_form(normalise_choices(candidate(answer="A", choices=["a whale", "a shark"])))
    assert (text.answer, text.answer_type) == ("a whale", "text")


def test_answers_their_own_scorer_rejects_are_unverifiable():
    assert reason_of(lambda: check_verifiable(candidate(answer="x", answer_type="count"), 4)) == "answer_unverifiable"
    assert reason_of(lambda: check_verifiable(candidate(answer="[1, 2, 3]", answer_type="bbox"), 4)) \
        == "answer_unverifiable"
    long_text = "the animal in the picture is a large grey whale"
    assert reason_of(lambda: check_verifiable(candidate(answer=long_text, answer_type="text"), 4)) \
        == "answer_unverifiable"
    assert check_verifiable(candidate(answer="[0, 0, 14, 14]", answer_type="point"), 4).answer == "[0, 0, 14, 14]"


@pytest.mark.parametrize("written, stored, answer_type, choices", [
    (r"\text{(B)}", "B", "choice", ["cat", "dog"]),
    (r"$\text{Paris}$", "Paris", "text", None),
    (r"3 \text{ cm}", "3 cm", "math", None),
    ("28 percent", r"28\%", "math", None),
    (r"\frac{1}{\mathrm{e}}", r"\frac{1}{e}", "math", None),
])
def test_import_normalises_ground_truths_and_keeps_the_original(written, stored, answer_type, choices):
    """Data import stores the normalised answer, records the source's own, and both score as correct."""
    config = DataConfig()
    item = candidate(answer=written, choices=choices)
    for rule in conversion_rules(config):
        item = rule(item)
    assert (item.answer, item.answer_type, item.metadata["original_answer"]) == (stored, answer_type, written)
    response = rf"\boxed{{{item.answer}}}"
    meta = {"choices": item.choices} if item.choices else {}
    assert score(response, written, item.answer_type, **meta).reason == "correct"
    assert score(response, item.answer, item.answer_type, **meta).reason == "correct"


def test_configured_rules_include_free_form_only_when_asked():
    assert len(conversion_rules(DataConfig(free_form_choices=True))) == len(conversion_rules(DataConfig())) + 1
    assert len(conversion_rules(DataConfig(reject_multi_question=False))) == len(conversion_rules(DataConfig())) - 1


# --- image validation ---------------------------------------------------------------------------------------------

def test_truncated_jpeg_is_unreadable():
    data = encoded(rgb((80, 80)), "JPEG", quality=90)
    assert reason_of(lambda: normalise_image(data[: len(data) // 2], POLICY)) == "image_unreadable"
    assert reason_of(lambda: normalise_image(b"not an image at all", POLICY)) == "image_unreadable"


def test_one_pixel_png_is_too_small():
    assert reason_of(lambda: normalise_image(encoded(rgb((1, 1))), POLICY)) == "image_too_small"


def test_animated_gif_is_rejected():
    frames = [rgb(colour=(i * 60, 0, 0)) for i in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=50)
    assert reason_of(lambda: normalise_image(buffer.getvalue(), POLICY)) == "image_animated"


def test_extreme_aspect_ratio_is_rejected():
    assert reason_of(lambda: normalise_image(encoded(rgb((1200, 30))), POLICY)) == "image_aspect_ratio"


def test_out_of_budget_is_rejected_or_resized_to_multiples_of_28():
    big = encoded(rgb((300, 200)))
    reject = POLICY.model_copy(update={"resize": "reject"})
    assert reason_of(lambda: normalise_image(big, reject)) == "image_out_of_budget"
    fitted = normalise_image(big, POLICY)
    width, height = Image.open(io.BytesIO(fitted.data)).size
    assert fitted.size == (width, height) and fitted.upright_size == (300, 200)
    assert width % 28 == 0 and height % 28 == 0 and width * height <= POLICY.max_pixels
    small = normalise_image(encoded(rgb((30, 30))), POLICY)
    assert small.size[0] * small.size[1] >= POLICY.min_pixels


def test_cmyk_palette_alpha_and_16_bit_become_rgb():
    cmyk = encoded(Image.new("CMYK", (56, 56), (0, 255, 255, 0)), "JPEG")
    palette = encoded(rgb().convert("P", palette=Image.Palette.ADAPTIVE))
    alpha = encoded(Image.new("LA", (56, 56), (100, 0)))  # fully transparent: composited on white
    sixteen = Image.new("I;16", (56, 56))
    sixteen.putpixel((0, 0), 65535)
    for data, expected_corner in [(cmyk, None), (palette, (200, 30, 30)), (alpha, (255, 255, 255)),
                                  (encoded(sixteen), (255, 255, 255))]:
        image = Image.open(io.BytesIO(normalise_image(data, POLICY).data))
        assert image.mode == "RGB"
        if expected_corner:
            assert image.getpixel((0, 0)) == expected_corner
    red = Image.open(io.BytesIO(normalise_image(cmyk, POLICY).data)).getpixel((10, 10))
    assert red[0] > 200 and red[1] < 60 and red[2] < 60  # CMYK (0, 255, 255, 0) is red


def test_exif_orientation_is_applied():
    tall = rgb((56, 84))
    tall.paste((0, 0, 255), (0, 0, 56, 10))  # a blue band at the top of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display after rotating 90 degrees clockwise
    data = encoded(tall, "JPEG", exif=exif.tobytes(), quality=95)
    upright = Image.open(io.BytesIO(normalise_image(data, POLICY).data))
    assert upright.size == (84, 56)
    right_edge = upright.getpixel((80, 28))
    assert right_edge[2] > 200 and right_edge[0] < 60  # the band now runs down the right side


def test_valid_upright_rgb_png_passes_unchanged():
    data = encoded(rgb())
    assert normalise_image(data, POLICY).data == data


def test_curate_rescales_absolute_boxes_with_their_image(tmp_path):
    item = candidate(answer="[0, 0, 100, 100]", answer_type="bbox", images=[encoded(rgb((200, 200)))],
                     metadata={"coords": "absolute", "image_size": [200, 200]})
    row = curate(item, DataConfig(images=POLICY), tmp_path)
    assert row["reject_reason"] is None
    assert row["answer"] == "[0, 0, 56, 56]" and '"image_size": [112, 112]' in row["metadata"]


def test_curate_reports_a_missing_image_file_as_unreadable(tmp_path):
    row = curate(candidate(images=["nowhere.png"]), DataConfig(images=POLICY), tmp_path)
    assert row["reject_reason"] == "image_unreadable" and "nowhere.png" in row["reject_detail"]
