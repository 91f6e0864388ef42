"""Train-step throughput of the job against the tutorial-style reference, one setting per process.

    python -m bench.throughput --setting 64 [--quick]    # prints one JSON line; bench/__main__ reads it
    python -m bench.throughput --setting seed336x504 --checkpoint   # + a checkpoint's bytes and save time

Each setting runs in its own process so its peak RSS is its own. In that process the job's
variants and the reference are built, warmed up (the first call traces), and then timed in
interleaved rounds (`bench.timing`). Two logical CPU devices are configured before TensorFlow
initialises, for the 2-replica variant; the 1-replica variants run on the first of them. The
device's peak (`bench.hardware`) is timed in the same rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from job.config import TrainConfig, override, resolve, upsampling_stages  # noqa: E402
from job.training.devices import configure_cpu_replicas  # noqa: E402

# Random uint8 images the input pipelines cycle through: about the full set's training split, so
# per-epoch costs (the tutorial's new shuffle each epoch) weigh as much as in a real run.
IMAGES_PER_SETTING = {False: 704, True: 64}
# --quick shrinks the models to the fewest layers and a width of 8, and the batch to 8: tracing,
# not stepping, dominates a CPU smoke run, and it only has to prove the code runs.
QUICK = dict(g_filters=8, d_filters=8, global_batch_size=8)
QUICK_SETTINGS = ("64",)
PLAIN = dict(augment="", ema_kimg=0.0)

SETTINGS = {
    "seed28": lambda: resolve("seed28"),
    "64": lambda: resolve("default"),
    "128": lambda: override(resolve("default"), dict(dataset_config="128")),
    "seed336x504": lambda: resolve("seed336x504"),
}
LARGE_SETTING = "seed336x504"  # the long run: its own bench group (`python -m bench --only seed336x504`)
MULTI = "job defaults, multi-replica"  # xla=auto: off, batch norm synchronised
MULTI_XLA = "job defaults, multi-replica, XLA on"  # batch norm per replica
NO_XLA = "job defaults, XLA off"
CONDITIONAL = "job defaults, class-conditional"  # class embedding in G, projection in D
# The setting whose features are priced one by one and whose step is scaled over replicas.
FEATURE_SETTING = "64"


def setting_config(setting: str, quick: bool) -> TrainConfig:
    config = SETTINGS[setting]()
    if not quick:
        return config
    stages = upsampling_stages(config.height, config.width)
    return override(config, dict(QUICK, g_depth=stages + 1, d_depth=stages))


def variant_plan(setting: str, quick: bool, gpu: bool) -> list[tuple[str, dict, str]]:
    """(variant, config overrides, how it runs) for one setting.

    How: "reference", "job" (1-replica MirroredStrategy), "job-no-strategy" (the default
    strategy) or "job-multi" (every GPU, or 2 logical CPU devices; the same global batch).
    """
    mixed = ("job XLA + mixed precision", dict(precision="mixed_float16"), "job")
    if setting == LARGE_SETTING:  # a step takes seconds on a CPU: the figures the long run needs
        plan = [("reference", {}, "reference"), ("job defaults", {}, "job")]
        return plan + ([(NO_XLA, dict(xla="off"), "job")] if not quick else []) + ([mixed] if gpu else [])
    plan = [("reference", {}, "reference"), ("job plain", PLAIN, "job"), ("job defaults", {}, "job")]
    if not quick or setting == FEATURE_SETTING:
        plan.append((NO_XLA, dict(xla="off"), "job"))
    if setting != FEATURE_SETTING:
        return plan
    if not quick:
        plan += [
            ("job plain, no strategy", PLAIN, "job-no-strategy"),
            ("job augmentation only", dict(ema_kimg=0.0), "job"),
            ("job EMA only", dict(augment=""), "job"),
        ]
    plan.append((CONDITIONAL, dict(conditional=True), "job"))
    plan.append((MULTI, {}, "job-multi"))
    if not quick:
        plan.append((MULTI_XLA, dict(xla="on"), "job-multi"))
    if gpu:
        plan.append(mixed)
    return plan


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def save_checkpoint(runner) -> dict:
    """Bytes and seconds of one checkpoint of `runner`'s state, saved by the job's own protocol
    (`CheckpointStore.save` into a local run folder: write, then promote; no upload)."""
    import pathlib
    import tempfile

    from job import storage
    from job.checkpoint import CheckpointStore

    with tempfile.TemporaryDirectory(prefix="covidct-bench-ckpt-") as run_dir:
        store = CheckpointStore(storage.Mirror(run_dir), keep=1)
        t0 = time.perf_counter()
        folder = store.save(runner.state.checkpoint(), 0, 0, {}, background=False)
        seconds = time.perf_counter() - t0
        size = sum(f.stat().st_size for f in pathlib.Path(folder).rglob("*") if f.is_file())
    return {"bytes": size, "seconds": seconds}


def measure(setting: str, quick: bool, rounds: int, checkpoint: bool = False) -> dict:
    """Median seconds per step of every variant of `setting`, FLOPs per step and peak memory
    (and, with `checkpoint`, a checkpoint of the job-defaults state: bytes and save seconds)."""
    import tensorflow as tf

    from bench import hardware, runners
    from bench.flops import step_flops
    from bench.timing import calibrate, interleaved, median

    gpus = tf.config.list_physical_devices("GPU")
    config = setting_config(setting, quick)
    images = runners.random_images(config, IMAGES_PER_SETTING[quick])
    built, contenders, warm_seconds = [], [], {}
    for name, changes, how in variant_plan(setting, quick, bool(gpus)):
        variant_config = override(config, changes)
        t0 = time.perf_counter()
        if how == "reference":
            runner = runners.reference_runner(variant_config, images)
        elif how == "job-no-strategy":
            runner = runners.job_runner(name, variant_config, images, tf.distribute.get_strategy())
        else:
            strategy = runners.strategy(multi=how == "job-multi")
            runner = runners.job_runner(name, variant_config, images, strategy)
        runner.run(1)  # traces
        warm_seconds[name] = time.perf_counter() - t0
        steps = calibrate(runner.run, 0.05 if quick else 1.0)
        print(f"{name}: first call {warm_seconds[name]:.1f} s, {steps} step(s) per round, "
              f"{time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
        built.append(runner)
        contenders.append((name, runner.run, steps))
    peak_runs, peak_flops = hardware.peak_contenders(quick)
    for name, run in peak_runs.items():
        run(1)  # traces
        contenders.append((name, run, calibrate(run, 0.05 if quick else 1.0)))
    t0 = time.perf_counter()
    samples = interleaved(contenders, rounds)
    print(f"{rounds} rounds: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    losses = {r.name: r.run(1) for r in built}  # a finite loss proves the steps trained
    result = {
        "setting": setting,
        "height": config.height,
        "width": config.width,
        "batch": config.global_batch_size,
        "flops_per_step": step_flops(built[0].generator, built[0].discriminator,
                                     config.global_batch_size),
        "seconds_per_step": {r.name: median(samples[r.name]) for r in built},
        "peaks": dict(peak_flops, **{
            "dense_flops_per_s": peak_flops[hardware.DENSE] / median(samples[hardware.DENSE]),
            "conv_flops_per_s": peak_flops[hardware.CONV] / median(samples[hardware.CONV])}),
        "samples": samples,
        "first_call_seconds": warm_seconds,
        "final_g_loss": losses,
        "replicas": {r.name: r.replicas for r in built},
        "peak_rss_mb": _peak_rss_mb(),
        "device": "GPU" if gpus else "CPU",
    }
    if gpus:
        result["gpu_peak_mb"] = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
    if checkpoint:
        result["checkpoint"] = save_checkpoint(next(r for r in built if r.name == "job defaults"))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", choices=sorted(SETTINGS), required=True)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--checkpoint", action="store_true",
                        help="also save one checkpoint of the job-defaults state (bytes, seconds)")
    args = parser.parse_args(argv)
    configure_cpu_replicas(2)  # bench.runners.CPU_REPLICAS (importing it would start TF first)
    print(json.dumps(measure(args.setting, args.quick, args.rounds, args.checkpoint)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
