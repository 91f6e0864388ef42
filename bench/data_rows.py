"""Rows of the data and quality groups: prepare, volumes, pipeline, quality at fixed compute and
grey levels (intensity). Each function turns one group's measurement (a dict) into rows.
"""

from __future__ import annotations

from bench import sources
from bench.rows import Row, row
from bench.step_rows import LABELS
from bench.throughput import FEATURE_SETTING

PREPARE_TARGET_SCANS, PREPARE_TARGET_SECONDS = 750, 60.0
TARGET_PIPELINE_VS_STEP = 10.0
TARGET_SWD_VS_REFERENCE = 0.7
TARGET_INTENSITY_VS_FLOOR = 2.0
VOLUMES = 8  # phantom volumes (half DICOM, half NIfTI); fewer can leave the test split empty


def pipeline_rows(measured: dict, step_result: dict) -> list[Row]:
    label = LABELS[FEATURE_SETTING]
    step_rate = 1.0 / step_result["seconds_per_step"]["job defaults"]
    job, pillow = measured["job"], measured["pillow"]
    return [
        row(f"pipeline {label}: job tf.data, first epoch from TFRecords ({job['images']} images)",
            job["first_epoch"], "batches/s", reference=step_rate, target=TARGET_PIPELINE_VS_STEP,
            note="reference = the job-defaults step's consumption rate (batches/s)"),
        row(f"pipeline {label}: job tf.data, cached epochs", job["cached"], "batches/s",
            reference=step_rate),
        row(f"pipeline {label}: Pillow decode+resize of {pillow['files']} original files per epoch",
            pillow["batches"], "batches/s", reference=step_rate),
    ]


def prepare_rows(measured: dict, source: sources.Source) -> list[Row]:
    found, seconds = measured["found"], measured["seconds"]
    scaled = seconds * PREPARE_TARGET_SCANS / found
    return [
        row(f"prepare 64x64: {found} {source.kind} scans -> {measured['kept']} kept", seconds, "s",
            better="lower"),
        row(f"prepare 64x64: seconds per {PREPARE_TARGET_SCANS} scans", scaled, "s",
            target=PREPARE_TARGET_SECONDS if source.real else None, better="lower",
            note="scaled linearly from the measured build" + ("" if source.real else
                 "; demo phantoms, so no target (it is for real scans)")),
        row("memory prepare: peak RSS (largest of the process and its decode workers)",
            max(measured["peak_rss_mb"], measured["peak_child_rss_mb"]), "MB", better="lower"),
    ]


def volume_rows(measured: dict) -> list[Row]:
    """Slices per second from CT volumes: the whole build, and the readers alone."""
    depth, side = measured["volume_shape"][0], measured["volume_shape"][1]
    rows = [row(f"prepare 64x64: slices per second from {measured['volumes']} CT volumes "
                f"({depth}x{side}x{side})", measured["slices_per_second"], "slices/s",
                note=f"whole build, {measured['workers']} decode workers: read, select "
                     f"{measured['slices_kept']} lung slices, window, clean, dedupe, write")]
    for fmt, rate in sorted(measured["reader_slices_per_second_one_core"].items()):
        rows.append(row(f"prepare: {fmt} reader alone, one core", rate, "slices/s",
                        note="pydicom / nibabel: one volume read slice by slice"))
    return rows


def quality_rows(measured: dict, source: sources.Source, budget: float, png: str) -> list[Row]:
    head = f"quality 64x64 ({budget:.0f} s each, {measured['real_images']} {source.kind} images)"
    ref = measured["swd_reference"]
    return [
        row(f"{head}: SWD job defaults (EMA G)", measured["swd_job_ema"], "SWDx1e3",
            reference=ref, target=TARGET_SWD_VS_REFERENCE, better="lower",
            note=f"reference = tutorial-style SWD; demo preset architecture; grid: {png}"),
        row(f"{head}: SWD job raw G", measured["swd_job_raw"], "SWDx1e3", reference=ref,
            better="lower"),
        row(f"{head}: training steps, job vs reference", measured["steps_job"], "steps",
            reference=measured["steps_reference"]),
    ]


def intensity_rows(measured: dict, source: sources.Source, budget: float, png: str) -> list[Row]:
    head = (f"intensity seed28 covid 28-lungs ({budget:.0f} s, {measured['kimg']:.1f} kimg, "
            f"{measured['real_images']} {source.kind} images)")
    standing, moving = measured["standing"], measured["moving"]
    means = (f"mean grey level: hold-out {measured['real_mean']:+.2f}, standing "
             f"{measured['standing_mean']:+.2f}, moving averages {measured['moving_mean']:+.2f} "
             f"([-1, 1] units)")
    return [
        row(f"{head}: intensity W1 vs hold-out, EMA G with standing statistics",
            standing["intensity_w1_holdout"], "W1", reference=standing["intensity_w1_floor"],
            target=TARGET_INTENSITY_VS_FLOOR, better="lower",
            note=f"reference = the real floor (training vs hold-out scans); {means}; grid: {png}"),
        row(f"{head}: intensity W1 vs hold-out, EMA G with moving averages (before)",
            moving["intensity_w1_holdout"], "W1", reference=moving["intensity_w1_floor"],
            better="lower", note="the same weights, drawn with the statistics the train step copies"),
        row(f"{head}: SWD vs hold-out, EMA G with standing statistics", standing["swd_holdout"],
            "SWDx1e3", reference=standing["swd_floor"], better="lower"),
    ]
