"""dedupe: exact and near copies found across sources, one kept (the largest), order-independent."""

import io

import numpy as np
from PIL import Image

from tfds_covidct.covid_ct import dedupe, phantoms


def _gray(index, label="covid", layout="plain"):
    return np.asarray(Image.fromarray(phantoms.figure(index, label, layout).rgb).convert("L"))


def _candidate(name, gray, sha=None):
    return dedupe.Candidate(name, sha or f"{name:0>64}", dedupe.signature(gray), gray.size)


def _jpeg_copy(gray, scale):
    image = Image.fromarray(gray).resize((int(gray.shape[1] * scale), int(gray.shape[0] * scale)),
                                         Image.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=80)
    return np.asarray(Image.open(buffer))


def test_exact_and_near_copies_are_found_and_the_largest_is_kept():
    original = _gray(0)
    candidates = [
        _candidate("small_jpeg", _jpeg_copy(original, 0.6)),
        _candidate("original", original, sha="a" * 64),
        _candidate("same_bytes", original, sha="a" * 64),
        _candidate("other_scan", _gray(1)),
        _candidate("other_scan_2", _gray(2, "non_covid")),
    ]
    result = {d.id: d for d in dedupe.find_duplicates(candidates)}
    assert set(result) == {"small_jpeg", "same_bytes"}
    assert result["same_bytes"].of == "original" and result["same_bytes"].kind == "exact"
    assert result["small_jpeg"].of == "original" and result["small_jpeg"].kind == "near"
    # The order the files were found in does not change the decision.
    again = {d.id: d.of for d in dedupe.find_duplicates(candidates[::-1])}
    assert again == {k: v.of for k, v in result.items()}


def test_demo_phantoms_are_all_distinct():
    candidates = [_candidate(f"{label}{i}", _gray(i, label, phantoms.LAYOUTS[i % 6]))
                  for label in ("covid", "non_covid") for i in range(12)]
    assert dedupe.find_duplicates(candidates) == []


def test_hamming_and_correlation_matrices():
    hashes = np.array([0, 0b1011, 2**64 - 1], dtype=np.uint64)
    d = dedupe.hamming_matrix(hashes)
    assert d[0, 1] == 3 and d[0, 2] == 64 and d[1, 1] == 0
    sig = np.arange(1024, dtype=np.uint8).reshape(32, 32)
    c = dedupe.correlation_matrix(np.stack([sig, sig, np.zeros_like(sig)]))
    assert np.isclose(c[0, 1], 1.0) and c[0, 2] == 0.0
