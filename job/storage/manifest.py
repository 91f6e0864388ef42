"""A folder's manifest: each file's size and CRC32C, and the check of a folder against one.

A checkpoint's `COMPLETE` marker carries its manifest (`job.checkpoint`), so a checkpoint that a
truncated upload, a flipped byte or a lifecycle rule has damaged is recognised before TensorFlow
reads it. The CRC32C is Castagnoli's, base64 of its 4 big-endian bytes: what a GCS listing reports
for every object (google-crc32c computes it, in C where the wheel has it).
"""

from __future__ import annotations

from pathlib import Path

from job.storage.files import files_below, size_and_crc32c


def manifest(folder: str | Path, leave_out: tuple[str, ...] = ()) -> dict[str, dict]:
    """{relative path: {"size": bytes, "crc32c": base64}} of every file below `folder`."""
    out = {}
    for rel, path in sorted(files_below(str(folder)).items()):
        if rel not in leave_out:
            size, crc = size_and_crc32c(path)
            out[rel] = {"size": size, "crc32c": crc}
    return out


def mismatch(folder: str | Path, expected: dict[str, dict]) -> str | None:
    """Why `folder` does not hold the files `expected` lists (missing, another size, another
    CRC32C), or None when it does. Files it does not list are not looked at."""
    folder = Path(folder)
    for rel, want in sorted(expected.items()):
        path = folder / rel
        if not path.is_file():
            return f"{rel} is missing"
        size, crc = size_and_crc32c(path)
        if size != want["size"]:
            return f"{rel} has {size} bytes, {want['size']} were written"
        if crc != want["crc32c"]:
            return f"{rel} has CRC32C {crc}, {want['crc32c']} was written (its bytes changed)"
    return None
