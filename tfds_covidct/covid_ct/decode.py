"""Bytes of a JPEG or PNG -> 8-bit grayscale numpy, or a reason why not.

Pure: no file system, no globals changed. The format is detected from the content, never from the
file name: 34 COVID-CT files named `.png` hold JPEG data. Every Pillow mode is handled (1, L, LA,
P, RGB, RGBA, CMYK, I;16, I, F). Strongly coloured pixels (red/cyan boxes, yellow circles drawn on
a scan by a paper's authors) are reported as a mask, computed before the colour is thrown away, so
that cleaning can paint them out: a model must not learn "colour mark means COVID".
"""

from __future__ import annotations

import dataclasses
import io
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError
from scipy import ndimage

ACCEPTED_FORMATS = ("JPEG", "PNG")
# The largest real scan is 1852x2342 (4.3 Mpx). Anything above this limit is refused before its
# pixels are decoded: a 12000x12000 figure is not a CT slice we want, and decoding it costs 144 MB+.
MAX_PIXELS = 36_000_000
# A file whose header declares more than this many pixels per byte of file is a decompression
# bomb (real scans: 2-20 pixels per byte; a flat 12000x12000 JPEG: ~50).
BOMB_PIXELS_PER_BYTE = 1000
# max(R,G,B) - min(R,G,B) above this marks a drawn colour mark; JPEG chroma noise on gray scans
# stays well below it. A mark's blurred halo (figures were scaled and re-compressed) is weaker:
# pixels above COLOUR_HALO within 2 pixels of a strong mark belong to it.
COLOUR_SATURATION = 70
COLOUR_HALO = 25


class DecodeError(ValueError):
    """A file that cannot become a scan; `reason` is a short stable code for the audit."""

    def __init__(self, reason: str, detail: str):
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


@dataclasses.dataclass(frozen=True)
class Decoded:
    """A decoded scan: `gray` (H, W) uint8; `colour_mask` (H, W) bool of drawn colour marks."""

    gray: np.ndarray
    colour_mask: np.ndarray
    format: str
    mode: str

    @property
    def height(self) -> int:
        return int(self.gray.shape[0])

    @property
    def width(self) -> int:
        return int(self.gray.shape[1])


def decode(data: bytes, max_pixels: int = MAX_PIXELS) -> Decoded:
    """Decodes `data` to grayscale; raises `DecodeError(reason, detail)` for anything unusable.

    Reasons: empty_file, not_an_image, unsupported_format, animated, decompression_bomb, oversize,
    truncated, corrupt.
    """
    if not data:
        raise DecodeError("empty_file", "zero bytes")
    try:
        with warnings.catch_warnings():
            # Our own pixel limit below replaces Pillow's warning; its hard error still fires.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        raise DecodeError("decompression_bomb", str(e)) from None
    except UnidentifiedImageError:
        raise DecodeError("not_an_image", f"no image format recognised in {len(data)} bytes") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise DecodeError("corrupt", f"{type(e).__name__}: {e}") from None

    if getattr(image, "n_frames", 1) > 1:
        raise DecodeError("animated", f"{image.format} with {image.n_frames} frames")
    if image.format not in ACCEPTED_FORMATS:
        raise DecodeError("unsupported_format", f"{image.format} (accepted: {', '.join(ACCEPTED_FORMATS)})")
    width, height = image.size
    pixels = width * height
    if pixels > max_pixels:
        if pixels / len(data) > BOMB_PIXELS_PER_BYTE:
            raise DecodeError(
                "decompression_bomb", f"declares {width}x{height} px in {len(data)} bytes")
        raise DecodeError("oversize", f"{width}x{height} px is over the limit of {max_pixels} px")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image.load()
    except Image.DecompressionBombError as e:
        raise DecodeError("decompression_bomb", str(e)) from None
    except OSError as e:
        reason = "truncated" if "truncated" in str(e).lower() else "corrupt"
        raise DecodeError(reason, f"{image.format}: {e}") from None
    except (ValueError, SyntaxError, EOFError) as e:
        raise DecodeError("corrupt", f"{image.format}: {type(e).__name__}: {e}") from None

    gray, colour_mask = to_gray(image)
    return Decoded(gray=gray, colour_mask=colour_mask, format=image.format, mode=image.mode)


def to_gray(image: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """Any Pillow mode -> (uint8 gray, bool colour mask); transparency is composited onto black."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _rescale(np.asarray(image)), np.zeros(image.size[::-1], bool)
    if mode == "1":
        return np.asarray(image.convert("L")), np.zeros(image.size[::-1], bool)
    if mode in ("L",):
        return np.asarray(image), np.zeros(image.size[::-1], bool)
    has_alpha = mode in ("LA", "RGBA", "PA") or (mode == "P" and "transparency" in image.info)
    if has_alpha and image.convert("RGBA").getchannel("A").getextrema()[0] < 255:
        rgba = image.convert("RGBA")
        rgb = Image.new("RGB", image.size, (0, 0, 0))  # over black: CT background is black
        rgb.paste(rgba, mask=rgba.getchannel("A"))
    else:
        rgb = image.convert("RGB")
    # Pillow's luma (ITU-R 601 weights) in C; the colour test needs the channels.
    return np.asarray(rgb.convert("L")), colour_marks(np.asarray(rgb))


def colour_marks(rgb: np.ndarray) -> np.ndarray:
    """Pixels whose colour is far from gray, with their halo: annotation marks, never CT anatomy."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    spread = np.maximum(np.maximum(r, g), b).astype(np.int16) - np.minimum(np.minimum(r, g), b)
    strong = spread > COLOUR_SATURATION
    if not strong.any():
        return strong
    return ndimage.binary_dilation(strong, iterations=2) & (spread > COLOUR_HALO) | strong


def _rescale(values: np.ndarray) -> np.ndarray:
    """High bit-depth or float pixels -> uint8 over the image's own range (12-bit CT in 16 bits)."""
    values = values.astype(np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(values.shape, np.uint8)
    lo, hi = values[finite].min(), values[finite].max()
    if hi <= lo:
        return np.zeros(values.shape, np.uint8)
    scaled = (np.where(finite, values, lo) - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
