"""cleaning on generated figures of known geometry: the crop keeps the phantom, drops the rest."""

import numpy as np
import pytest
from PIL import Image

from tfds_covidct.covid_ct import cleaning, decode, phantoms


def _contains(outer, inner, slack=0):
    return (outer[0] <= inner[0] + slack and outer[1] <= inner[1] + slack
            and outer[2] >= inner[2] - slack and outer[3] >= inner[3] - slack)


def _overlap(a, b):
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return max(0, w) * max(0, h)


def _clean(fig, size=(64, 64)):
    gray, mask = decode.to_gray(Image.fromarray(fig.rgb))
    return cleaning.clean(gray, mask, size), gray


@pytest.mark.parametrize("layout", ["xray", "panel"])
def test_crop_keeps_the_phantom_and_drops_the_panel_beside_it(layout):
    fig = phantoms.figure(3, "covid", layout)
    cleaned, _ = _clean(fig)
    body, (beside,) = fig.body_box, fig.distractor_boxes
    assert _contains(cleaned.box, body, slack=3), (cleaned.box, body)
    assert _overlap(cleaned.box, beside) == 0, (cleaned.box, beside)
    # Tight: the margin is a few percent of the body, not the figure.
    assert cleaned.box[2] - cleaned.box[0] <= 1.15 * (body[2] - body[0])


def test_crop_drops_the_text_band():
    fig = phantoms.figure(1, "non_covid", "text")
    cleaned, gray = _clean(fig)
    assert _contains(cleaned.box, fig.body_box, slack=3)
    for text_box in fig.distractor_boxes:
        x0, y0, x1, y1 = cleaned.box
        # What is left of a text box inside the crop was blacked out (outside the body hull).
        tx0, ty0, tx1, ty1 = max(x0, text_box[0]), max(y0, text_box[1]), min(x1, text_box[2]), min(y1, text_box[3])
        if tx1 > tx0 and ty1 > ty0:
            assert gray[ty0:ty1, tx0:tx1].max() > 200  # there was text here...
            full = cleaning.clean(gray, None, (y1 - y0, x1 - x0))  # ...and none is left at full size
            assert full.image[ty0 - y0:ty1 - y0, tx0 - x0:tx1 - x0].max() < 60


def test_crop_drops_the_white_border():
    fig = phantoms.figure(2, "covid", "border")
    cleaned, gray = _clean(fig)
    frame = 14
    x0, y0, x1, y1 = cleaned.box
    assert x0 >= frame and y0 >= frame and x1 <= gray.shape[1] - frame and y1 <= gray.shape[0] - frame
    assert _contains(cleaned.box, fig.body_box, slack=3)


def test_colour_marks_are_painted_out():
    fig = phantoms.figure(5, "covid", "colour")
    cleaned, gray = _clean(fig)
    _, mask = decode.to_gray(Image.fromarray(fig.rgb))
    assert mask.sum() > 100
    plain = cleaning.clean(gray, None, (64, 64))
    # With the marks painted out the image differs from the one that keeps them, only a little.
    difference = np.abs(cleaned.image.astype(int) - plain.image.astype(int))
    assert difference.max() > 20 and difference.mean() < 5
    assert any(n.startswith("colour_marks_removed") for n in cleaned.notes)


@pytest.mark.parametrize("size", [(28, 28), (64, 64), (336, 504)])
def test_output_has_the_target_size_and_the_body_fills_it(size):
    fig = phantoms.figure(0, "covid", "plain")
    cleaned, _ = _clean(fig, size)
    assert cleaned.image.shape == size and cleaned.image.dtype == np.uint8
    assert (cleaned.image > 20).mean() > 0.45  # body, not margin
    assert cleaned.image.max() == 255  # intensities stretched per image


def test_pad_to_aspect_pads_and_never_crops():
    image = np.full((30, 100), 9, np.uint8)
    padded = cleaning.pad_to_aspect(image, 1.0)
    assert padded.shape == (100, 100) and (padded == 9).sum() == image.size
    assert cleaning.pad_to_aspect(image, 504 / 336).shape == (67, 100)


def test_curated_box_is_used_as_given():
    fig = phantoms.figure(4, "covid", "xray")
    _, gray = _clean(fig)
    cleaned = cleaning.clean(gray, None, (64, 64), box=(10, 20, 110, 120))
    assert cleaned.box == (10, 20, 110, 120) and "curated_crop" in cleaned.notes


def test_tiny_crop_for_a_large_target_is_refused():
    gray = np.zeros((40, 60), np.uint8)
    gray[5:35, 5:55] = 200
    with pytest.raises(cleaning.TooSmallError):
        cleaning.clean(gray, None, (336, 504))


def test_blank_image_keeps_the_frame_and_says_so():
    cleaned = cleaning.clean(np.zeros((50, 50), np.uint8), None, (28, 28))
    assert cleaned.box == (0, 0, 50, 50) and any("no_body_found" in n for n in cleaned.notes)
