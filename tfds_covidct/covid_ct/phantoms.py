"""Deterministic synthetic CT-like phantoms: the embedded default (`covidct prepare --demo`).

Each phantom is an axial "slice": a body ellipse, two dark lungs with vessels, a spine, and for the
covid class ground-glass opacities (soft bright blobs in the lung periphery). Like the real
figures, some come with what the cleaning must remove: burned-in text, a white frame, a second
panel, a chest x-ray beside the slice, coloured marks. They are written as PNG files (with a
`SYNTHETIC_PHANTOMS.json` marker) and flow through the very same pipeline as real scans; their
`source` feature is "synthetic_phantom" and they are never mixed with real data.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

# The phantoms' CT volumes (in Hounsfield units) and their DICOM/NIfTI writers, named here too.
from tfds_covidct.covid_ct.phantom_volumes import (  # noqa: F401
    volume_hu,
    write_dicom_series,
    write_enhanced_ct,
    write_nifti,
)
from tfds_covidct.covid_ct.sources import LABELS, SYNTHETIC_MARKER, SYNTHETIC_SOURCE

LAYOUTS = ("plain", "text", "border", "panel", "xray", "colour")
DEFAULT_PER_CLASS = 48


@dataclasses.dataclass(frozen=True)
class Figure:
    """A phantom figure: `rgb` (H, W, 3) uint8, where the body is, and where the distractors are."""

    rgb: np.ndarray
    body_box: tuple[int, int, int, int]  # x0, y0, x1, y1 of the body ellipse
    distractor_boxes: tuple[tuple[int, int, int, int], ...]  # text, x-ray, second panel, frame


def slice_image(rng: np.random.Generator, height: int, width: int, covid: bool) -> np.ndarray:
    """One CT-like axial slice (float32, 0..255) filling a height x width canvas."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    cy, cx = height / 2, width / 2
    a, b = width * 0.47, height * 0.45  # body semi-axes
    image = np.zeros((height, width), np.float32)
    body = ((xx - cx) / a) ** 2 + ((yy - cy) / b) ** 2 <= 1
    image[body] = 185 + rng.normal(0, 4)
    lungs = np.zeros_like(body)
    for side in (-1, 1):  # each lung its own size and place: every phantom is a distinct scan
        lx = cx + side * a * rng.uniform(0.38, 0.52)
        ly = cy + b * rng.uniform(-0.15, 0.05)
        la, lb = a * rng.uniform(0.24, 0.38), b * rng.uniform(0.45, 0.72)
        lungs |= ((xx - lx) / la) ** 2 + ((yy - ly) / lb) ** 2 <= 1
    heart = (((xx - cx - a * rng.uniform(-0.1, 0.15)) / (a * rng.uniform(0.15, 0.3))) ** 2
             + ((yy - cy - b * rng.uniform(0.0, 0.3)) / (b * rng.uniform(0.2, 0.35))) ** 2 <= 1)
    lungs &= body & ~heart
    image[lungs] = 28
    vessels = np.zeros_like(image)
    ys, xs = np.nonzero(lungs)
    for i in rng.choice(len(ys), size=40, replace=False):
        r = rng.uniform(0.6, 2.2) * width / 256
        vessels += 130 * (((xx - xs[i]) ** 2 + (yy - ys[i]) ** 2) <= r * r)
    image += ndimage.gaussian_filter(vessels, 0.8) * lungs
    spine = ((xx - cx) ** 2 + (yy - (cy + b * 0.72)) ** 2) <= (b * 0.14) ** 2
    image[spine] = 245
    if covid:
        opacity = np.zeros_like(image)
        # Wide, bright ground-glass: a class difference a small conditional GAN learns in a short
        # demo run (tests/test_conditional.py), and a person sees at 28x28.
        for _ in range(int(rng.integers(3, 7))):
            i = rng.integers(len(ys))
            r = rng.uniform(0.08, 0.16) * width
            opacity += 110 * (((xx - xs[i]) ** 2 + (yy - ys[i]) ** 2) <= r * r)
        image += ndimage.gaussian_filter(opacity, width / 40) * lungs
    image += rng.normal(0, 5, image.shape).astype(np.float32) * body
    return np.clip(ndimage.gaussian_filter(image, 0.7), 0, 255)


def xray_image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A chest-radiograph-like panel (the scout view some figures put beside the CT)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.full((height, width), 150.0, np.float32) + 40 * (yy / height)
    for side in (-1, 1):
        lx, ly = width / 2 + side * width * 0.22, height * 0.45
        lung = ((xx - lx) / (width * 0.17)) ** 2 + ((yy - ly) / (height * 0.33)) ** 2 <= 1
        image[lung] = 80
    image += rng.normal(0, 4, image.shape)
    return np.clip(image, 0, 255)


def figure(index: int, label: str, layout: str, seed: int = 0) -> Figure:
    """The phantom figure number `index` of `label` with the given layout (deterministic)."""
    rng = np.random.default_rng([seed, index, LABELS.index(label), LAYOUTS.index(layout)])
    bh, bw = int(rng.integers(200, 260)), int(rng.integers(280, 340))
    body = slice_image(rng, bh, bw, covid=label == "covid")
    pad = 30
    height, width = bh + 2 * pad, bw + 2 * pad
    extra_w = {"panel": int(bw * 0.6) + 24, "xray": int(bw * 0.5) + 24}.get(layout, 0)
    canvas = np.zeros((height, width + extra_w), np.float32)
    canvas[pad:pad + bh, pad:pad + bw] = body
    # The ellipse of slice_image spans 3..97 % of the width and 5..95 % of the height.
    body_box = (pad + int(0.03 * bw), pad + int(0.05 * bh), pad + int(np.ceil(0.97 * bw)),
                pad + int(np.ceil(0.95 * bh)))
    distractors = []
    if layout == "panel":
        ph, pw = int(bh * 0.6), int(bw * 0.6)
        second = slice_image(rng, ph, pw, covid=label == "covid")
        x0, y0 = width + 4, pad + (bh - ph) // 2
        canvas[y0:y0 + ph, x0:x0 + pw] = second
        distractors.append((x0, y0, x0 + pw, y0 + ph))
    if layout == "xray":
        xh, xw = int(bh * 0.7), int(bw * 0.5)
        x0, y0 = width + 4, pad + bh - xh
        canvas[y0:y0 + xh, x0:x0 + xw] = xray_image(rng, xh, xw)
        distractors.append((x0, y0, x0 + xw, y0 + xh))
    rgb = np.repeat(np.rint(canvas).astype(np.uint8)[..., None], 3, axis=2)
    image = Image.fromarray(rgb)
    draw = ImageDraw.Draw(image)
    if layout == "text":
        draw.text((4, 2), f"PHANTOM {index}  W:1500 L:-600", fill=(255, 255, 255))
        draw.text((width - 60, height - 14), "SYNTH", fill=(255, 255, 255))
        distractors += [(4, 2, 200, 14), (width - 60, height - 14, width - 20, height - 2)]
    if layout == "colour":
        cx, cy = pad + bw // 4, pad + bh // 2
        draw.ellipse((cx - 25, cy - 25, cx + 25, cy + 25), outline=(255, 0, 0), width=3)
        draw.line((pad + bw - 60, pad + 20, pad + bw - 20, pad + 60), fill=(255, 220, 0), width=3)
    if layout == "border":
        frame = 14
        framed = Image.new("RGB", (image.width + 2 * frame, image.height + 2 * frame), (255, 255, 255))
        framed.paste(image, (frame, frame))
        image = framed
        body_box = tuple(v + frame for v in body_box)
        distractors.append((0, 0, image.width, image.height))
    return Figure(np.asarray(image), body_box, tuple(distractors))


def write_phantoms(folder: str | pathlib.Path, per_class: int = DEFAULT_PER_CLASS, seed: int = 0) -> int:
    """Writes `per_class` phantoms of each label as PNGs under folder/{covid,non_covid}/, plus
    the SYNTHETIC_PHANTOMS.json marker that makes the folder a synthetic source. Returns the
    number of images written. Same arguments, same bytes."""
    folder = pathlib.Path(folder)
    count = 0
    for label in LABELS:
        (folder / label).mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            layout = LAYOUTS[index % len(LAYOUTS)]
            fig = figure(index, label, layout, seed)
            Image.fromarray(fig.rgb).save(folder / label / f"phantom_{label}_{index:03d}_{layout}.png")
            count += 1
    marker = {"source": SYNTHETIC_SOURCE, "per_class": per_class, "seed": seed,
              "note": "synthetic CT-like phantoms, not patient data"}
    (folder / SYNTHETIC_MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    return count
