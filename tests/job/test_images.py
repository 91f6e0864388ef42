"""Sample grids, synthetic-image tags, the progress GIF and labelled comparisons (job/images.py)."""

import numpy as np
import pytest
from PIL import Image

from job import images
from job.errors import UserError


def _constant_batch(values, h=4, w=3):
    return np.stack([np.full((h, w, 1), v, np.float32) for v in values])


def test_grid_size_and_pixel_mapping():
    # 5 images of 4x3 with known values, 3 columns -> 2 rows; gaps of 2 px.
    values = [-1.0, 1.0, 0.0, -2.0, 2.0]
    g = images.grid(_constant_batch(values), cols=3)
    assert g.mode == "L"
    assert g.size == (3 * 3 + 2 * 2, 2 * 4 + 1 * 2)  # (width, height)
    px = np.asarray(g)
    assert px[0, 0] == 0  # -1 -> 0
    assert px[0, 5] == 255  # 1 -> 255 (second tile starts at x = 3 + 2)
    assert px[0, 10] == 128  # 0 -> 127.5, rounded
    assert px[6, 0] == 0  # -2 clipped to black (second row starts at y = 4 + 2)
    assert px[6, 5] == 255  # 2 clipped to white
    assert (px[:, 3:5] == images.GAP_VALUE).all()  # vertical gap
    assert (px[4:6, :] == images.GAP_VALUE).all()  # horizontal gap
    assert (px[6:, 10:] == images.GAP_VALUE).all()  # the unused sixth cell


def test_grid_default_is_near_square_and_accepts_3d():
    g = images.grid(np.zeros((10, 8, 8), np.float32))
    assert g.size == (4 * 8 + 3 * 2, 3 * 8 + 2 * 2)  # ceil(sqrt(10)) = 4 columns, 3 rows


@pytest.mark.parametrize(
    "bad", [np.zeros((0, 4, 4, 1)), np.zeros((4, 4)), np.full((2, 4, 4, 1), np.nan)]
)
def test_grid_rejects_bad_batches(bad):
    with pytest.raises(UserError):
        images.grid(bad)


def test_tags_round_trip(tmp_path):
    path = tmp_path / "grids" / "grid.png"
    image = images.grid(_constant_batch([0.5, -0.5]))
    images.save_png(image, path, synthetic_tags={"run": "runs/smoke", "epoch": 7})
    tags = images.read_tags(path)
    assert tags["synthetic"] == "true"
    assert tags["generator"] == "covidct-gan"
    assert tags["run"] == "runs/smoke"
    assert tags["epoch"] == "7"
    assert "not a patient scan" in tags["Comment"]
    with Image.open(path) as back:
        assert np.array_equal(np.asarray(back), np.asarray(image))


def test_tags_cannot_unmark_synthetic(tmp_path):
    image = images.grid(_constant_batch([0.0]))
    with pytest.raises(UserError, match="synthetic"):
        images.save_png(image, tmp_path / "x.png", synthetic_tags={"synthetic": "false"})
    assert not (tmp_path / "x.png").exists()


def test_read_tags_of_missing_file_is_user_error(tmp_path):
    with pytest.raises(UserError, match="no such image"):
        images.read_tags(tmp_path / "missing.png")


def test_progress_gif_has_one_frame_per_png(tmp_path):
    paths = []
    for epoch in range(4):
        # Distinct frames: Pillow merges identical consecutive frames into one.
        image = images.grid(_constant_batch([epoch / 4 - 0.5] * 4, h=8, w=8))
        paths.append(tmp_path / f"grid_{epoch}.png")
        images.save_png(image, paths[-1], synthetic_tags={"epoch": epoch})
    out = tmp_path / "progress.gif"
    images.progress_gif(paths, out, duration_ms=250)
    with Image.open(out) as gif, Image.open(paths[0]) as first:
        assert gif.n_frames == 4
        assert gif.size == first.size
        assert gif.info["duration"] == 250
        assert b"not a patient scan" in gif.info["comment"]


def test_progress_gif_shrinks_large_frames_and_rejects_empty(tmp_path):
    path = tmp_path / "big.png"
    images.save_png(images.grid(np.zeros((4, 300, 450, 1), np.float32), cols=2), path, synthetic_tags={})
    images.progress_gif([path, path], tmp_path / "p.gif", max_side=200)
    with Image.open(tmp_path / "p.gif") as gif:
        assert max(gif.size) == 200
    with pytest.raises(UserError):
        images.progress_gif([], tmp_path / "none.gif")


def test_side_by_side_dimensions_and_content():
    real = _constant_batch([1.0] * 5, h=6, w=5)
    fake = _constant_batch([-1.0] * 3, h=6, w=5)
    out = images.side_by_side([("real", real), ("generated", fake)], label_width=60)
    assert out.size == (60 + 5 * 5 + 4 * 2, 6 + 2 + 6)
    px = np.asarray(out)
    assert (px[0:6, 60:65] == 255).all()  # first real image
    assert (px[8:14, 60:65] == 0).all()  # first generated image, one gap below
    assert (px[8:14, 60 + 3 * 7 :] == images.GAP_VALUE).all()  # short row padded
    assert (px[:, :60] < 128).any()  # the labels were drawn


def test_side_by_side_rejects_mixed_sizes():
    with pytest.raises(UserError, match="different image sizes"):
        images.side_by_side([("a", np.zeros((2, 4, 4, 1))), ("b", np.zeros((2, 5, 4, 1)))])
