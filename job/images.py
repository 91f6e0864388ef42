"""Pictures of what the generator draws: [-1, 1] <-> uint8, grids, tagged PNGs, GIFs, rows.

Pure Pillow, no display: every function returns a `PIL.Image` or writes a local file (the run
folder, synced to the run URI by job.storage). Every generated image written here carries the PNG
tags of `tfds_covidct.covid_ct_synthetic.tags` (synthetic=true, the run, the epoch, the class), so
it can never pass for a patient scan.
"""

from __future__ import annotations

import math
import pathlib
from typing import Any, Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from job.errors import UserError
from tfds_covidct.covid_ct_synthetic import tags as png_tags
from tfds_covidct.errors import DatasetError

GAP_PX = 2
GAP_VALUE = 255  # white: CT slices have black surroundings, so black gaps would vanish

GENERATOR_NAME = png_tags.GENERATOR_NAME
REQUIRED_TAGS = png_tags.REQUIRED_TAGS


def to_uint8(images: Any) -> np.ndarray:
    """[-1, 1] floats (N, H, W, 1) or (N, H, W) -> uint8 (N, H, W): -1 -> 0, 1 -> 255, clipped."""
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 3 or x.shape[0] == 0:
        raise UserError(f"expected a batch of images (N, H, W, 1), got shape {np.shape(images)}")
    if not np.all(np.isfinite(x)):
        raise UserError("images contain NaN or inf (did the generator diverge?)")
    return np.clip(np.round((x + 1.0) * 127.5), 0, 255).astype(np.uint8)


def grid(images: Any, *, cols: int | None = None) -> Image.Image:
    """Tile a batch into one grayscale image, row-major, with 2-pixel white gaps.

    `cols` defaults to ceil(sqrt(N)), giving a near-square grid; unused cells stay white.
    """
    pixels = to_uint8(images)
    if cols is None:
        cols = math.ceil(math.sqrt(len(pixels)))
    if cols < 1:
        raise UserError(f"grid: cols must be positive, got {cols}")
    return _tile(pixels, min(cols, len(pixels)))


def _tile(pixels: np.ndarray, cols: int) -> Image.Image:
    n, h, w = pixels.shape
    rows = math.ceil(n / cols)
    canvas = np.full(
        (rows * h + (rows - 1) * GAP_PX, cols * w + (cols - 1) * GAP_PX), GAP_VALUE, np.uint8
    )
    for i, tile in enumerate(pixels):
        top, left = (i // cols) * (h + GAP_PX), (i % cols) * (w + GAP_PX)
        canvas[top : top + h, left : left + w] = tile
    return Image.fromarray(canvas)  # 2-D uint8 -> mode "L"


def save_png(
    image: Image.Image, path: str | pathlib.Path, *, synthetic_tags: Mapping[str, Any]
) -> None:
    """Write `image` as a PNG marked synthetic, plus `synthetic_tags` (e.g. run, epoch) as text.

    The required marks (synthetic=true, generator, a Comment) always win: a tag that tries to
    change them is a UserError rather than silently ignored. Parent folders are created.
    """
    try:
        info = png_tags.png_info(synthetic_tags)
    except DatasetError as error:
        raise UserError(str(error)) from None
    out = pathlib.Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out, format="PNG", pnginfo=info)


def read_tags(path: str | pathlib.Path) -> dict[str, str]:
    """The PNG text chunks of `path` (what `save_png` wrote); a UserError if there is no file."""
    try:
        return png_tags.read_tags(path)
    except DatasetError as error:
        raise UserError(str(error)) from None


def progress_gif(
    png_paths: Sequence[str | pathlib.Path],
    out_path: str | pathlib.Path,
    *,
    duration_ms: int = 300,
    max_side: int = 1024,
) -> None:
    """Animate sample grids (oldest first) into a looping GIF, one frame per PNG.

    Frames are shrunk so their longer side is at most `max_side`: a 336x504 8x8 grid is
    2702x4046 pixels, and a few hundred of those at full size would not fit in memory.
    The GIF comment marks it synthetic like the PNGs.
    """
    if not png_paths:
        raise UserError("progress_gif: no sample images to animate")
    frames = []
    for p in png_paths:
        with Image.open(p) as im:
            frame = im.convert("L")
        frame.thumbnail((max_side, max_side))
        if frames and frame.size != frames[0].size:
            raise UserError(f"progress_gif: {p} is {frame.size}, the first frame {frames[0].size}")
        frames.append(frame)
    out = pathlib.Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(
        out,
        format="GIF",
        save_all=True,
        append_images=frames[1:],
        duration=duration_ms,
        loop=0,
        comment=REQUIRED_TAGS["Comment"],
    )


def side_by_side(rows: Sequence[tuple[str, Any]], *, label_width: int = 96) -> Image.Image:
    """Labelled rows of images ("real", "generated", ...) for comparing sets by eye.

    Each row is `label_width` pixels of label followed by its images in a single row with 2-pixel
    gaps; rows are 2 pixels apart. All images must share one H×W. Rows may differ in length.
    """
    if not rows:
        raise UserError("side_by_side: no rows")
    pixel_rows = [(label, to_uint8(images)) for label, images in rows]
    tile_shapes = {pixels.shape[1:] for _, pixels in pixel_rows}
    if len(tile_shapes) > 1:
        raise UserError(f"side_by_side: rows have different image sizes {sorted(tile_shapes)}")
    strips = [(label, _tile(pixels, len(pixels))) for label, pixels in pixel_rows]
    width = label_width + max(strip.width for _, strip in strips)
    height = sum(strip.height for _, strip in strips) + (len(strips) - 1) * GAP_PX
    canvas = Image.new("L", (width, height), GAP_VALUE)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    top = 0
    for label, strip in strips:
        canvas.paste(strip, (label_width, top))
        text_top, text_bottom = draw.textbbox((0, 0), label, font=font)[1::2]
        draw.text((4, top + (strip.height - text_bottom - text_top) // 2), label, fill=0, font=font)
        top += strip.height + GAP_PX
    return canvas
