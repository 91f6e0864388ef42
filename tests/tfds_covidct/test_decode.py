"""decode: every mode and bit depth to 8-bit gray; every bad file from the issue to a reason."""

import io
import os
import pathlib
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from tfds_covidct.covid_ct import decode


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _gradient(mode: str = "L", size=(64, 48)) -> Image.Image:
    values = np.tile(np.linspace(0, 255, size[0]).astype(np.uint8), (size[1], 1))
    return Image.fromarray(values).convert(mode)


def _reason(data: bytes) -> str:
    with pytest.raises(decode.DecodeError) as info:
        decode.decode(data)
    assert info.value.detail  # every rejection says why
    return info.value.reason


def test_zero_byte_file_is_empty():
    assert _reason(b"") == "empty_file"


def test_truncated_jpeg_is_truncated():
    data = _encode(_gradient("RGB", (256, 256)), "JPEG")
    assert _reason(data[: len(data) // 2]) == "truncated"


def test_text_file_named_png_is_not_an_image():
    assert _reason(b"this is a README, not a scan\n" * 10) == "not_an_image"


def test_animated_gif_is_refused():
    frames = [_gradient("P"), _gradient("P").transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    assert _reason(buffer.getvalue()) == "animated"


def test_camera_style_mpo_is_read_as_its_first_frame():
    """A JPEG with a preview frame (Multi-Picture Format, as phones and some PACS exports write it),
    made by Pillow's own MPO writer: the primary image is the scan, the preview is not another."""
    from tfds_covidct.covid_ct import phantoms

    primary = Image.fromarray(phantoms.figure(3, "covid", "plain").rgb)
    preview = primary.resize((primary.width // 4, primary.height // 4)).transpose(Image.Transpose.ROTATE_90)
    data = _encode(primary, "MPO", save_all=True, append_images=[preview], quality=95)
    assert Image.open(io.BytesIO(data)).n_frames == 2  # a real two-frame MPO, not a plain JPEG
    decoded = decode.decode(data)
    assert (decoded.format, decoded.width, decoded.height) == ("MPO", primary.width, primary.height)
    assert "mpo_first_of_2_frames" in decoded.notes
    alone = decode.decode(_encode(primary, "JPEG", quality=95)).gray
    assert np.abs(decoded.gray.astype(int) - alone).mean() < 1.0


def test_static_gif_is_an_unsupported_format():
    assert _reason(_encode(_gradient("P"), "GIF")) == "unsupported_format"


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height pixels in a few dozen bytes: a decompression bomb."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16))
            + chunk(b"IEND", b""))


def test_decompression_bomb_is_refused_before_decoding():
    assert _reason(_png_header_only(40000, 40000)) == "decompression_bomb"  # Pillow's own error
    assert _reason(_png_header_only(7000, 7000)) == "decompression_bomb"  # ours: 49 Mpx in ~80 B


def test_12000_square_image_is_oversize():
    data = _encode(Image.new("L", (12000, 12000), 100), "JPEG", quality=50)
    assert _reason(data) == "oversize"


def test_16_bit_png_is_rescaled_to_8_bit():
    values = np.tile(np.linspace(1000, 4000, 64).astype(np.uint16), (32, 1))  # 12-bit CT range
    data = _encode(Image.fromarray(values), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I;16")
    decoded = decode.decode(data)
    assert decoded.gray.dtype == np.uint8 and decoded.gray.shape == (32, 64)
    assert decoded.gray.min() == 0 and decoded.gray.max() == 255
    assert np.all(np.diff(decoded.gray[0].astype(int)) >= 0)  # order kept


def test_cmyk_jpeg_decodes_to_gray():
    image = _gradient("RGB", (64, 48)).convert("CMYK")
    decoded = decode.decode(_encode(image, "JPEG", quality=95))
    assert decoded.mode == "CMYK" and decoded.gray.dtype == np.uint8
    assert decoded.gray[:, -1].mean() > decoded.gray[:, 0].mean() + 150  # the ramp survives
    assert not decoded.colour_mask.any()


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGB", "RGBA", "I", "F"])
def test_every_mode_decodes(mode):
    image = _gradient("L").convert(mode)
    fmt = "PNG" if mode not in ("I", "F") else "TIFF"
    if fmt == "TIFF":  # TIFF is refused, so bring I/F through the converter directly
        gray, mask = decode.to_gray(image)
    else:
        decoded = decode.decode(_encode(image, fmt))
        gray, mask = decoded.gray, decoded.colour_mask
    assert gray.dtype == np.uint8 and gray.shape == (48, 64) and not mask.any()
    assert gray[:, -1].mean() > gray[:, 0].mean()


def test_format_is_detected_by_content_not_name():
    decoded = decode.decode(_encode(_gradient("RGB"), "JPEG"))  # as a ".png" file would hold it
    assert decoded.format == "JPEG"


def test_transparent_pixels_become_black():
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[:, :4, 3] = 255  # left half opaque, right half transparent
    decoded = decode.decode(_encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert decoded.gray[:, :4].min() == 200 and decoded.gray[:, 4:].max() == 0


def test_colour_marks_are_masked_gray_is_not():
    gray = np.full((40, 40, 3), 120, np.uint8)
    gray[10:12, 5:35] = (230, 30, 30)  # a red line
    gray[30, 5:35] = (140, 118, 120)  # JPEG-like chroma noise
    mask = decode.decode(_encode(Image.fromarray(gray), "PNG")).colour_mask
    assert mask[10:12, 5:35].all()
    assert not mask[30].any() and not mask[20].any()


CASES = os.environ.get("COVIDCT_CASES_DIR")


def _case(relative):
    path = pathlib.Path(CASES or "") / "dataset" / relative
    if not CASES or not path.is_file():
        pytest.skip(f"COVIDCT_CASES_DIR={CASES!r} does not hold dataset/{relative}")
    return path.read_bytes()


def test_jpeg_missing_only_its_end_marker_is_kept_and_one_cut_short_is_not():
    data = _case("jpeg-without-end-marker/CT_COVID/baseline_no_eoi.jpg")
    decoded = decode.decode(data)
    assert decoded.notes == ("jpeg_end_marker_missing:pixels_complete",)
    assert decoded.gray.shape == (384, 512)
    for cut in (1, 3, 100, len(data) // 2):  # pixel data missing too: still truncated
        assert _reason(data[:-cut]) == "truncated", cut


def test_exif_orientation_is_applied_first():
    data = _case("exif-rotated/CT_COVID/rotated_with_exif_orientation_6.jpg")
    twin = decode.decode(_case("exif-rotated/CT_NonCOVID/1093.png")).gray
    decoded = decode.decode(data)
    assert decoded.gray.shape == twin.shape and "exif_orientation_6_applied" in decoded.notes
    assert np.corrcoef(decoded.gray.ravel(), twin.ravel())[0, 1] > 0.99


def test_every_exif_orientation_comes_out_upright():
    upright = np.zeros((40, 60), np.uint8)
    upright[5:15, 5:25] = 255  # a bright block top-left
    for orientation in range(1, 9):
        image = Image.fromarray(upright)
        stored = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                  4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
                  6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE,
                  8: Image.Transpose.ROTATE_270}.get(orientation)
        if stored is not None:
            image = image.transpose(stored)
        exif = Image.Exif()
        exif[0x0112] = orientation
        gray = decode.decode(_encode(image, "PNG", exif=exif)).gray
        assert gray.shape == (40, 60) and gray[5:15, 5:25].min() == 255 and gray[20:].max() == 0, orientation


def test_sixteen_bit_outliers_cannot_flatten_the_body():
    values = np.tile(np.linspace(1000, 4000, 64).astype(np.uint16), (64, 1))
    values[:4, :4] = 65535  # a burned-in marker at the format's maximum
    gray = decode.decode(_encode(Image.fromarray(values), "PNG")).gray
    assert len(np.unique(gray[8:])) > 60  # the ramp keeps its grey levels (min-max gave ~4)
    assert decode.decode(_case("sixteen-bit-marker/CT_COVID/ct12bit_in16_with_marker.png")).gray.std() > 60
