"""Bytes of a JPEG or PNG -> 8-bit grayscale numpy, or a reason why not.

Pure: no file system, no globals changed. The format is detected from the content, never from the
file name: 34 COVID-CT files named `.png` hold JPEG data. Every Pillow mode is handled (1, L, LA,
P, RGB, RGBA, CMYK, I;16, I, F); the EXIF orientation is applied first. Strongly coloured pixels (red/cyan boxes, yellow circles drawn on
a scan by a paper's authors) are reported as a mask, computed before the colour is thrown away, so
that cleaning can paint them out: a model must not learn "colour mark means COVID".
"""

from __future__ import annotations

import dataclasses
import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from scipy import ndimage

ACCEPTED_FORMATS = ("JPEG", "MPO", "PNG")  # MPO: a JPEG with preview frames, read as its first
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
# High bit-depth pixels are windowed to 8 bits between these percentiles of the image's own values:
# a burned-in marker or a padding value at the format's maximum (a few pixels at 65535 in a 12-bit
# scan) cannot squeeze the body into a few grey levels, as a min-max rescale lets it.
WINDOW_PERCENTILES = (0.5, 99.5)
JPEG_EOI = b"\xff\xd9"


class DecodeError(ValueError):
    """A file that cannot become a scan; `reason` is a short stable code for the audit."""

    def __init__(self, reason: str, detail: str):
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")

    def __reduce__(self):
        # Rebuilt from its two fields: the default (from args, the joined message) would call
        # __init__ with one argument, so a worker pool or Ray could not pass it back.
        return type(self), (self.reason, self.detail)


@dataclasses.dataclass(frozen=True)
class Decoded:
    """A decoded scan: `gray` (H, W) uint8, upright; `colour_mask` (H, W) bool of drawn colour marks.

    `notes` says what decoding had to do beyond the usual (an EXIF rotation, a window for high
    bit-depth pixels, a missing JPEG end marker), for the audit.
    """

    gray: np.ndarray
    colour_mask: np.ndarray
    format: str
    mode: str
    notes: tuple[str, ...] = ()

    @property
    def height(self) -> int:
        return int(self.gray.shape[0])

    @property
    def width(self) -> int:
        return int(self.gray.shape[1])


def decode(data: bytes, max_pixels: int = MAX_PIXELS) -> Decoded:
    """Decodes `data` to upright 8-bit grayscale.

    Order: the EXIF orientation is applied first (before any pixel is measured), then the pixels
    become (H, W) uint8 gray (high bit depths windowed by robust percentiles, see `window`).
    A JPEG whose pixel data is complete but whose end marker is missing is kept with a note; an
    MPO (a JPEG with preview frames) is its first frame, with a note.

    Raises:
      DecodeError(reason, detail) for anything unusable; reasons: empty_file, not_an_image,
      unsupported_format, animated, decompression_bomb, oversize, truncated, corrupt.
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

    notes = []
    if image.format == "MPO":
        # A JPEG with preview frames (CIPA DC-007 Multi-Picture Format, what phones and some PACS
        # exports write): Pillow opens it at frame 0, the primary image; the rest are reduced
        # copies of it (or a stereo partner), never another scan.
        notes.append(f"mpo_first_of_{image.n_frames}_frames")
    elif getattr(image, "n_frames", 1) > 1:
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
    fmt, mode = image.format, image.mode
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image.load()
    except Image.DecompressionBombError as e:
        raise DecodeError("decompression_bomb", str(e)) from None
    except OSError as e:
        complete = _jpeg_without_end_marker(data) if image.format == "JPEG" else None
        if complete is None:
            reason = "truncated" if "truncated" in str(e).lower() else "corrupt"
            raise DecodeError(reason, f"{image.format}: {e}") from None
        image = complete
        notes.append("jpeg_end_marker_missing:pixels_complete")
    except (ValueError, SyntaxError, EOFError) as e:
        raise DecodeError("corrupt", f"{image.format}: {type(e).__name__}: {e}") from None

    orientation = image.getexif().get(EXIF_ORIENTATION, 1)
    if orientation not in (None, 1):
        # Pillow's own transpose: it knows all 8 EXIF orientations (mirrors included) and drops
        # the tag, so a viewer's "upright" is what every later step sees.
        image = ImageOps.exif_transpose(image)
        notes.append(f"exif_orientation_{orientation}_applied")
    gray, colour_mask = to_gray(image)
    if image.mode in HIGH_DEPTH_MODES:
        notes.append("windowed_p{:g}-p{:g}".format(*WINDOW_PERCENTILES))
    return Decoded(gray=gray, colour_mask=colour_mask, format=fmt, mode=mode, notes=tuple(notes))


EXIF_ORIENTATION = 0x0112
HIGH_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def _jpeg_without_end_marker(data: bytes) -> Image.Image | None:
    """The image of a JPEG whose only fault is a missing end-of-image marker, else None.

    Pillow refuses such a file as truncated although every pixel is there. The proof that nothing
    else is missing: decode it with the 2-byte marker appended, and again with different filler
    bytes (0x00, 0x55, 0xAA runs) between the data and the marker. When every block was already in
    the file the decoder ignores the filler (extraneous bytes after the last block) and all decodes
    agree pixel for pixel; when blocks are missing it decodes the filler as their data and the
    results differ (checked on files cut 1, 3, 100 bytes and half way short).
    """
    if data.rstrip(b"\x00").endswith(JPEG_EOI):
        return None
    decoded = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            for filler in (b"", b"\x00" * 64, b"\x55" * 64, b"\xaa" * 64):
                image = Image.open(io.BytesIO(data + filler + JPEG_EOI))
                image.load()
                decoded.append(image)
    except (OSError, ValueError, SyntaxError, EOFError):
        return None
    first = np.asarray(decoded[0])
    if any(not np.array_equal(first, np.asarray(other)) for other in decoded[1:]):
        return None
    return decoded[0]


def to_gray(image: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """Any Pillow mode -> (uint8 gray, bool colour mask); transparency is composited onto black."""
    mode = image.mode
    if mode in HIGH_DEPTH_MODES:
        return window(np.asarray(image)), np.zeros(image.size[::-1], bool)
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


def window(values: np.ndarray, percentiles: tuple[float, float] = WINDOW_PERCENTILES) -> np.ndarray:
    """High bit-depth or float pixels (H, W) -> uint8 (H, W), windowed by robust percentiles.

    The window is [p_lo, p_hi] of the image's own finite values (default the 0.5th and 99.5th
    percentiles), mapped linearly to 0..255 and clipped: a few outlier pixels (a burned-in block
    at 65535, a padding value of -2000 HU) fall outside it instead of setting the scale. When the
    percentiles coincide (a nearly flat image) the min..max range is used; a flat image gives
    zeros. The method is the percentile windowing of CT preprocessing (e.g. nnU-Net clips CT to its
    0.5..99.5 percentiles).
    """
    values = values.astype(np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(values.shape, np.uint8)
    lo, hi = np.percentile(values[finite], percentiles)
    if hi <= lo:
        lo, hi = values[finite].min(), values[finite].max()
    if hi <= lo:
        return np.zeros(values.shape, np.uint8)
    scaled = (np.where(finite, values, lo) - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
