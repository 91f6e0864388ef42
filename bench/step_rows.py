"""Rows of the step-time groups: step, hardware, scaling, memory, checkpoint and the long run.

Each function turns one measurement of `bench.throughput` or `bench.checkpoints` (a dict of
seconds, FLOPs and bytes) into `bench.rows.Row`s, with the issue's targets beside the figures.
"""

from __future__ import annotations

from bench import projection
from bench.rows import Row, row
from bench.throughput import (CONDITIONAL, FEATURE_SETTING, LARGE_SETTING, MULTI, MULTI_XLA,
                              NO_XLA)

LABELS = {"seed28": "seed28 28x28", "64": "64x64", "128": "128x128", "seed336x504": "seed336x504"}

# Targets from the issue (asserted only by --check).
TARGET_PLAIN_VS_REFERENCE = 1.0
TARGET_DEFAULTS_VS_REFERENCE = 0.85
TARGET_UTILISATION_PERCENT = 70.0
TARGET_UTILISATION_SETTING = "128"
TARGET_GPU_VS_REFERENCE = 2.0


def _images_per_second(result: dict) -> dict[str, float]:
    return {k: result["batch"] / v for k, v in result["seconds_per_step"].items()}


def step_rows(setting: str, result: dict) -> list[Row]:
    label = LABELS[setting]
    ips = _images_per_second(result)
    ref = ips["reference"]
    feature = setting == FEATURE_SETTING
    rows = [row(f"step {label}: reference (tutorial-style)", ref, "img/s")]
    if "job plain" in ips:  # not timed for the long run, whose steps take seconds
        rows.append(row(f"step {label}: job, aug+EMA off (same architecture)", ips["job plain"],
                        "img/s", reference=ref,
                        target=TARGET_PLAIN_VS_REFERENCE if feature else None))
    rows.append(row(f"step {label}: job defaults (aug+EMA on, XLA)", ips["job defaults"], "img/s",
                    reference=ref, target=TARGET_DEFAULTS_VS_REFERENCE if feature else None))
    if NO_XLA in ips:
        rows.append(row(f"step {label}: job defaults, XLA off (--set xla=off)", ips[NO_XLA],
                        "img/s", reference=ref))
    if "job XLA + mixed precision" in ips:
        rows.append(row(f"step {label}: job XLA + mixed precision (GPU)",
                        ips["job XLA + mixed precision"], "img/s", reference=ref,
                        target=TARGET_GPU_VS_REFERENCE))
    if feature:
        t = result["seconds_per_step"]
        costs = [
            ("augmentation (translation,cutout,color)", "job augmentation only", "job plain"),
            ("EMA generator", "job EMA only", "job plain"),
            ("aug + EMA together", "job defaults", "job plain"),
            ("XLA off (the multi-replica default: synchronised batch norm)", NO_XLA,
             "job defaults"),
            ("MirroredStrategy wrapper, 1 replica", "job plain", "job plain, no strategy"),
            ("class conditioning (conditional=true: embedding in G, projection D)", CONDITIONAL,
             "job defaults"),
            ("rest of the job step vs tutorial (XLA, softplus losses, z and aug params from the "
             "pipeline, prefetch)", "job plain, no strategy", "reference"),
        ]
        for what, slow, base in costs:
            if slow in t and base in t:
                rows.append(row(f"cost {label}: {what}", 100 * (t[slow] / t[base] - 1),
                                "% step time", better="lower",
                                note=f"'{slow}' vs '{base}', median seconds per step"))
    return rows


def hardware_rows(setting: str, result: dict) -> list[Row]:
    label = LABELS[setting]
    flops = result["flops_per_step"]
    peaks = result["peaks"]
    dense, conv = peaks["dense_flops_per_s"], peaks["conv_flops_per_s"]
    rows = peak_rows(label, peaks) + [row(f"flops {label}: per step", flops / 1e9, "GFLOP",
                note="dense+conv layers counted; a step = 3 G + 7 D forward passes (bench/flops.py), "
                     f"batch {result['batch']}")]
    for variant in [v for v in ("reference", "job defaults", NO_XLA) if v in result["seconds_per_step"]]:
        achieved = flops / result["seconds_per_step"][variant]
        target = (TARGET_UTILISATION_PERCENT
                  if setting == TARGET_UTILISATION_SETTING and variant == "job defaults" else None)
        rows.append(row(f"flops {label}: {variant} achieved", achieved / 1e9, "GFLOP/s"))
        rows.append(row(f"utilisation {label}: {variant}, % of dense peak", 100 * achieved / dense,
                        "%", target=target, note=f"{100 * achieved / conv:.0f}% of the conv peak"))
    return rows


def peak_rows(label: str, peaks: dict) -> list[Row]:
    n = peaks["matmul_n"]
    b, side, ch, k = peaks["conv_shape"]
    note = f"timed in the {label} step rounds, interleaved with the steps"
    return [
        row(f"peak {label} rounds: dense matmul {n}x{n} float32", peaks["dense_flops_per_s"] / 1e9,
            "GFLOP/s", note=note),
        row(f"peak {label} rounds: conv {k}x{k} {side}x{side}x{ch}->{ch} batch {b} float32",
            peaks["conv_flops_per_s"] / 1e9, "GFLOP/s", note=note),
    ]


def scaling_rows(result: dict) -> list[Row]:
    ips = _images_per_second(result)
    replicas = result["replicas"][MULTI]
    on_cpu = result["device"] == "CPU"
    kind = "logical CPU devices on the same cores" if on_cpu else "GPUs"
    label = LABELS[FEATURE_SETTING]
    ideal = 1.0 if on_cpu else float(replicas)
    note = ("logical CPU devices share the same 2 cores, so the ideal is the 1-replica rate "
            "(efficiency = 2-replica / 1-replica)" if on_cpu else
            "efficiency = N-replica / (N x 1-replica)")
    # Each multi-replica variant against one replica running the same arithmetic.
    pairs = [(MULTI, NO_XLA, "XLA off, batch norm synchronised (the default)"),
             (MULTI_XLA, "job defaults", "XLA on, batch norm per replica")]
    rows = []
    for many_name, one_name, what in pairs:
        if many_name not in ips:
            continue
        one, many = ips[one_name], ips[many_name]
        rows += [
            row(f"scaling {label}: job defaults, {what}, {replicas} replicas ({kind}) vs 1, "
                f"global batch {result['batch']}", many, "img/s", reference=one),
            row(f"scaling {label}: efficiency, {what}, {replicas} replicas ({kind})",
                100 * many / (one * ideal), "%", note=note),
        ]
    return rows


def memory_rows(setting: str, result: dict) -> list[Row]:
    label = LABELS[setting]
    variants = len(result["seconds_per_step"])
    rows = [row(f"memory {label}: peak RSS, reference + {variants - 1} job variants",
                result["peak_rss_mb"], "MB", better="lower")]
    if "gpu_peak_mb" in result:
        rows.append(row(f"memory {label}: peak GPU memory", result["gpu_peak_mb"], "MB",
                        better="lower"))
    return rows


def long_run_rows(result: dict, config) -> list[Row]:
    """The long run's rows: step, FLOP/s, memory, checkpoint, and the whole run projected."""
    label = LABELS[LARGE_SETTING]
    rows = step_rows(LARGE_SETTING, result) + hardware_rows(LARGE_SETTING, result)
    rows += memory_rows(LARGE_SETTING, result)
    ckpt = result["checkpoint"]
    rows += [
        row(f"checkpoint {label}: bytes on disk", ckpt["bytes"] / 1e6, "MB", better="lower",
            note="G, D, EMA G, both Adams, epoch and step: the job's CheckpointStore.save"),
        row(f"checkpoint {label}: save time, local disk", ckpt["seconds"], "s", better="lower",
            note="write + promote into a local run folder; a bucket adds the upload, in the background"),
    ]
    images = projection.FULL_TRAIN_IMAGES
    step = result["seconds_per_step"]["job defaults"]
    device = result["device"]
    measured = projection.run_cost(config, images, step, ckpt["seconds"])
    rows.append(row(
        f"projection {label}: {config.epochs} epochs on this machine ({device}, measured step)",
        measured.hours, "h", better="lower",
        note=f"{images} training images / batch {config.global_batch_size}: {measured.arithmetic()}"))
    for gpus in (1, 8):
        per_step = projection.gpu_seconds_per_step(result["flops_per_step"], gpus)
        cost = projection.run_cost(config, images, per_step, ckpt["seconds"])
        rows.append(row(
            f"projection {label}: {config.epochs} epochs on {gpus} x {projection.L4.name} "
            f"(estimate)", cost.hours, "h", reference=measured.hours, better="lower",
            note=f"{projection.assumptions(gpus)}: {result['flops_per_step'] / 1e12:.3g} TFLOP "
                 f"per step of {config.global_batch_size} images; {cost.arithmetic()}; "
                 f"reference = the {device} figure"))
    return rows


def checkpoint_rows(result: dict) -> list[Row]:
    """A preset's checkpoint: bytes, the measured local save, and save + upload (estimated)
    against the grace budget a spot reclaim leaves."""
    name, grace = result["preset"], result["grace_seconds"]
    upload = result["bytes"] / projection.ASSUMED_GCS_UPLOAD_BYTES_PER_S
    return [
        row(f"checkpoint {name}: bytes", result["bytes"] / 1e6, "MB", better="lower",
            note="G, D, EMA G, both Adams: CheckpointStore.save"),
        row(f"checkpoint {name}: save, local disk (measured)", result["seconds"], "s",
            better="lower", note="what a training step waits for; the upload runs in the background"),
        row(f"checkpoint {name}: save + upload (estimate)", result["seconds"] + upload, "s",
            reference=grace, target=1.0, better="lower",
            note=f"upload at an assumed {projection.ASSUMED_GCS_UPLOAD_BYTES_PER_S / 1e6:.0f} MB/s; "
                 f"reference = grace_seconds ({grace:.0f} s of GKE's ~15 s spot notice)"),
    ]
