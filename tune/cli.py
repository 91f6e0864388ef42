"""The `sweep` and `best` subcommands of `covidct` (entry-point group `covidct.commands`).

    covidct sweep --preset demo --name lr-depth --num-samples 8 --storage gs://BUCKET/sweeps
    covidct best --sweep gs://BUCKET/sweeps/lr-depth --out runs/best
    python -m tune --preset demo --name lr-depth ...      # = covidct sweep, for `ray job submit`

Parsing and wiring only. `sweep` takes the same base-config options as `covidct train`
(`add_config_args`), so a sweep's fixed settings are spelt as in a local run.
"""

from __future__ import annotations

import argparse

from job.cli import add_config_args, config_from_args
from job.config import TrainConfig
from job.metrics import registry


def add_sweep_args(parser: argparse.ArgumentParser) -> None:
    add_config_args(parser)
    parser.add_argument("--name", required=True, help="the sweep's name: rerunning it resumes it")
    parser.add_argument("--num-samples", type=int, default=4,
                        help="trials drawn from the space (times its grid points)")
    parser.add_argument("--gpus-per-trial", type=int, default=None,
                        help="GPUs of one trial's MirroredStrategy (default 1 if the cluster has GPUs, "
                             "else 0); a trial of several workers (--set num_workers=N) takes "
                             "gpus_per_worker instead")
    parser.add_argument("--cpus-per-trial", type=int, default=None,
                        help="CPUs per trial (default 1); without GPUs also its CPU replicas unless "
                             "--cpu-replicas; a trial of several workers takes cpus_per_worker instead")
    parser.add_argument("--max-concurrent-trials", type=int, default=None,
                        help="the most trials the cluster can grow to run at once (an autoscaling "
                             "cluster: its worker groups' maxReplicas x trials per worker); the "
                             "given --gpus-per-trial/--cpus-per-trial are then trusted")
    parser.add_argument("--storage", default="sweeps", help="folder or gs://BUCKET/PREFIX for results")
    parser.add_argument("--space", default=None, help="JSON/YAML search space (default: tune/space.py)")
    parser.add_argument("--scheduler", choices=("asha", "pbt"), default="asha",
                        help="asha stops weak trials early; pbt copies strong trials' weights and "
                             "settings into weak ones, so it searches only fields a run may change "
                             "on resume (learning rates, batch, augmentation; tune/pbt.py)")
    parser.add_argument("--grace-period", type=int, default=None,
                        help="epochs before ASHA may stop a trial (PBT: perturbation interval)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per trial")
    parser.add_argument("--data-dir", default=None, help="prepared dataset: folder or gs://")
    parser.add_argument("--top", type=int, default=3, help="trials with a sample grid in the report")
    parser.set_defaults(func=_sweep)


def add_sweep(subparsers) -> None:
    """Entry point `sweep`: adds the subcommand to `covidct`."""
    add_sweep_args(subparsers.add_parser("sweep", help="a Ray Tune sweep of training runs"))


def add_best(subparsers) -> None:
    """Entry point `best`: adds the subcommand to `covidct`."""
    p = subparsers.add_parser("best", help="rank a sweep's trials from its storage; download the best")
    p.add_argument("--sweep", required=True, help="the sweep's folder: <storage>/<name> (folder or gs://)")
    p.add_argument("--metric", default=registry.SELECTION_METRIC,
                   help="a logged metric (default: the one best.json and the sweep select on)")
    p.add_argument("--top", type=int, default=10, help="rows of the table")
    p.add_argument("--out", default=None, help="download the best checkpoint and config here")
    p.set_defaults(func=_best)


def sweep_config(args: argparse.Namespace) -> TrainConfig:
    return config_from_args(args, epochs=args.epochs, data_dir=args.data_dir)


def _sweep(args: argparse.Namespace) -> int:
    from tune.sweep import run_sweep

    # 0 once every trial ran and the report is written, whether or not some diverged or failed
    # (the report lists them); run_sweep raises a UserError with the contract's code otherwise.
    run_sweep(
        sweep_config(args), name=args.name, storage_uri=args.storage, num_samples=args.num_samples,
        gpus_per_trial=args.gpus_per_trial, cpus_per_trial=args.cpus_per_trial,
        max_concurrent_trials=args.max_concurrent_trials, space_file=args.space,
        scheduler=args.scheduler, grace_period_epochs=args.grace_period, top=args.top,
    )
    return 0


def _best(args: argparse.Namespace) -> int:
    from tune.best import best

    best(args.sweep, metric=args.metric, top=args.top, out=args.out)
    return 0
