"""`covidct`: the one front door. Parsing and wiring only; the work is in library functions.

    covidct prepare --demo --config 64 --data-dir data/tfds
    covidct train --preset demo
    covidct generate --run runs/demo --n 16 --out out/demo

Every command that trains takes the same base-config options (`--preset`, `--config`, `--set`),
parsed by `add_config_args` and resolved by `config_from_args`, so a manifest, a sweep and a local
run name a setting the same way. Commands of other packages (`sweep` and `best` from `tune/`)
plug in through the `covidct.commands` entry-point group: `job` never imports them.

Heavy imports (TensorFlow) happen inside commands, after the CPU replicas are configured, so
`covidct --help` is instant and `--cpu-replicas` works.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from importlib.metadata import entry_points

from job import config as cfg
from job import config_help
from job.deadline import exit_abandoning
from job.errors import Preempted, UsageError, UserError


def _positive_int(text: str) -> int:
    """argparse type of a count: a usage error (exit 2) unless a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _checkpoint(text: str) -> str:
    """argparse type of --checkpoint: latest, best or an epoch number (exit 2 otherwise)."""
    if text in ("latest", "best") or text.isdigit():
        return text
    raise argparse.ArgumentTypeError(f"expected latest, best or an epoch number, got {text!r}")



def add_config_args(parser: argparse.ArgumentParser) -> None:
    """The base-config options shared by every command that trains."""
    parser.add_argument("--preset", default=None, help=f"one of {sorted(cfg.PRESETS)}")
    parser.add_argument("--config", dest="config_file", default=None, help="JSON/YAML of field: value")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="FIELD=VALUE",
                        help="override one config field (repeatable)")
    parser.add_argument("--cpu-replicas", type=int, default=None,
                        help="split the CPU into N logical devices (CPU-only machines)")
    parser.add_argument("--num-workers", type=int, default=None,
                        help="train as N Ray Train workers, one per node (num_workers; on the Ray "
                             "cluster RAY_ADDRESS names, or a local one)")


def config_from_args(args: argparse.Namespace, **extra) -> cfg.TrainConfig:
    """Preset -> file -> --set -> explicit flags: the one way a command builds its config."""
    flags = {"cpu_replicas": getattr(args, "cpu_replicas", None),
             "num_workers": getattr(args, "num_workers", None), **extra}
    return cfg.resolve(args.preset, args.config_file, args.sets, flags)


def _train(args: argparse.Namespace) -> int:
    config = config_from_args(args, run_uri=args.run)
    if args.dry_run:
        from job.training.capacity import capacity  # pure arithmetic: nothing is built

        print(json.dumps(config.to_dict(), indent=1, sort_keys=True))
        figures = capacity(config)
        print(f"# {figures.geometry.describe()}; run URI {config.resolved_run_uri}")
        for line in figures.lines():
            print(f"# {line}")
        print("# nothing was built (--dry-run)")
        return 0
    if config.num_workers > 1 and not os.environ.get("TF_CONFIG"):
        # This process launches the workers (Ray Train writes their TF_CONFIG); `job` never
        # imports Ray: the launcher is a plugin of the `tune` package.
        return _plugin("covidct.launchers", "ray-train")(config, args.takeover)
    from job.training.devices import configure_cpu_replicas

    configure_cpu_replicas(config.cpu_replicas)
    from job.training.loop import fit

    fit(config, takeover=args.takeover)
    return 0


def _plugin(group: str, name: str):
    """The entry point `name` of `group` (pyproject.toml), loaded; exit 2 when not installed."""
    found = [ep for ep in entry_points(group=group) if ep.name == name]
    if not found:
        raise UsageError(f"{group} '{name}' is not installed: pip install -e . in the project")
    return found[0].load()


def _prepare(args: argparse.Namespace) -> int:
    from job.prepare import prepare

    prepare(args.config, args.data_dir, manual_dir=args.manual_dir, demo=args.demo,
            if_missing=args.if_missing, labels_csv=args.labels_csv)
    return 0


def _generate(args: argparse.Namespace) -> int:
    if args.drop_copies or args.tfds_data_dir:
        from job.export import export

        export(args.run, args.out, n=args.n, checkpoint=args.checkpoint, seed=args.seed,
               drop_copies=args.drop_copies, tfds_data_dir=args.tfds_data_dir, label=args.label)
        return 0
    from job.generate import generate_pngs

    generate_pngs(args.run, args.out, n=args.n, checkpoint=args.checkpoint, seed=args.seed,
                  label=args.label)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from job.errors import VERDICT_FAIL_EXIT_CODE
    from job.evaluation.evaluate import evaluate, evaluate_images

    if args.images:
        if not args.data_dir or not args.config:
            raise cfg.ConfigError("--images", "needs --data-dir and --config (the prepared "
                                  "dataset to compare with)")
        doc = evaluate_images(args.images, args.data_dir, args.config, args.out, seed=args.seed,
                              inception_weights=args.inception_weights, utility=args.utility,
                              utility_options=_utility_options(args))
    else:
        if args.data_dir or args.config:
            raise cfg.ConfigError("--run", "reads its dataset from the run's config.json; "
                                  "--data-dir and --config go with --images")
        doc = evaluate(args.run, args.out, checkpoint=args.checkpoint, n=args.n, seed=args.seed,
                       inception_weights=args.inception_weights, utility=args.utility,
                       utility_options=_utility_options(args))
    print(doc["verdict"])  # the last line, for scripts; the exit code says the same
    return 0 if doc["passed"] else VERDICT_FAIL_EXIT_CODE


def _utility_options(args: argparse.Namespace) -> dict:
    """--utility-seeds and --utility-ratios as `job.evaluation.utility.experiment` takes them."""
    try:
        ratios = tuple(float(r) for r in args.utility_ratios.split(",") if r.strip())
    except ValueError:
        raise cfg.ConfigError("--utility-ratios", f"expected numbers like 0.5,1, got "
                              f"{args.utility_ratios!r}") from None
    if args.utility_seeds < 2 or any(r <= 0 for r in ratios):
        raise cfg.ConfigError("--utility-seeds", "needs at least 2 seeds (an interval over seeds) "
                              f"and ratios above 0, got {args.utility_seeds} and {ratios}")
    return {"seeds": args.utility_seeds, "ratios": ratios}


def _export(args: argparse.Namespace) -> int:
    from job.serving import export_saved_model

    export_saved_model(args.run, args.out, checkpoint=args.checkpoint)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="covidct", description="COVID-19 CT DCGAN: data, training, sweeps.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("prepare", help="build the covid_ct TFDS dataset (real scans or --demo phantoms)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--manual-dir", help="folder with the downloaded scans (see tfds_covidct README)")
    source.add_argument("--demo", action="store_true", help="synthetic phantoms: no download needed")
    p.add_argument("--config", default="64", help=f"one of {sorted(cfg.RESOLUTIONS)}, or 'all'")
    p.add_argument("--data-dir", default=cfg.TrainConfig.data_dir, help="folder or gs:// URI")
    p.add_argument("--if-missing", action="store_true",
                   help="do nothing when the config is already prepared there (pod start-up)")
    p.add_argument("--labels-csv", default=None,
                   help="labels of CT volumes (DICOM/NIfTI) in --manual-dir: CSV with path,label[,patient] "
                        "(default: labels.csv at the top of manual_dir)")
    p.set_defaults(func=_prepare)

    p = sub.add_parser("train", help="one training run (resumes from the run URI's newest checkpoint)",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="config fields (--set FIELD=VALUE; also `covidct config`):\n"
                              + config_help.table())
    add_config_args(p)
    p.add_argument("--run", default=None, help="run URI: folder or gs://bucket/prefix (default runs/<name>)")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and stop")
    p.add_argument("--takeover", action="store_true",
                   help="take the run's lease from its writer at once: only when you know that "
                        "writer is dead (its pod or process gone)")
    p.set_defaults(func=_train)

    p = sub.add_parser("generate", help="write synthetic PNGs (tagged as synthetic) from a run's EMA generator")
    p.add_argument("--run", required=True, help="run URI (folder or gs://)")
    p.add_argument("--checkpoint", default="latest", type=_checkpoint,
                   help="latest, best or an epoch number")
    p.add_argument("--n", type=_positive_int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--label", default=None, metavar="CLASS[=N,...]",
                   help="a conditional run draws this class (covid, non_covid), or counts per class "
                        "(covid=600,non_covid=400, which replace --n)")
    p.add_argument("--drop-copies", action="store_true",
                   help="leave out images the memorisation check flags as near-copies of training scans")
    p.add_argument("--tfds", dest="tfds_data_dir", default="", metavar="DATA_DIR",
                   help="also build the TFDS dataset covid_ct_synthetic (with MODEL_CARD.md) in DATA_DIR")
    p.set_defaults(func=_generate)

    p = sub.add_parser("evaluate", help="report on a checkpoint or a folder of images: quality, real vs "
                       "synthetic, memorisation, diversity; exit 3 when the VERDICT is FAIL")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--run", help="run URI (folder or gs://)")
    what.add_argument("--images", help="a folder of images from any generator (with --data-dir, --config)")
    p.add_argument("--data-dir", default="", help="with --images: where the dataset was prepared")
    p.add_argument("--config", default="", help=f"with --images: the dataset config, one of {sorted(cfg.RESOLUTIONS)}")
    p.add_argument("--checkpoint", default="latest", type=_checkpoint,
                   help="latest, best or an epoch number")
    p.add_argument("--n", type=_positive_int, default=1000, help="generated images to evaluate (a conditional "
                   "run's shared across its classes by their training counts)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="report folder or gs:// URI")
    p.add_argument("--inception-weights", default="",
                   help="InceptionV3 no-top weights file (local or gs://) for FID/KID; 'imagenet' downloads them")
    p.add_argument("--utility", action="store_true",
                   help="also train COVID classifiers on real, real + classical augmentation and real "
                        "+ synthetic images, over seeds, with 95%% intervals and the gain (minutes)")
    p.add_argument("--utility-seeds", type=int, default=5, help="with --utility: seeds per arm")
    p.add_argument("--utility-ratios", default="0.5,1",
                   help="with --utility: synthetic:real ratios, comma-separated (needs --n >= the "
                        "largest ratio x the training scans)")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("config", help="list every config field: type, default, meaning")
    p.set_defaults(func=lambda args: print(config_help.table()) or 0, tensorflow=False)

    p = sub.add_parser("export", help="a run's EMA generator as a SavedModel for serving (TF Serving, "
                       "Vertex AI), with MODEL_CARD.md")
    p.add_argument("--run", required=True, help="run URI (folder or gs://)")
    p.add_argument("--checkpoint", default="latest", type=_checkpoint,
                   help="latest, best or an epoch number")
    # ONNX would need tf2onnx and onnx, which the pinned stack does not carry.
    p.add_argument("--format", default="saved_model", choices=["saved_model"],
                   help="saved_model: signature serving_default(z[, label]) -> uint8 images")
    p.add_argument("--out", required=True, help="output folder or gs:// URI")
    p.set_defaults(func=_export)

    for ep in sorted(entry_points(group="covidct.commands"), key=lambda e: e.name):
        ep.load()(sub)  # each plugin adds its own subparser and sets func
    return parser


def main(argv: list[str] | None = None, prog: str = "covidct") -> int:
    """The one main of `covidct ...` and `python -m tune ...` (= `covidct sweep ...`).

    Returns the exit code of the contract in `job.errors` (0 on success).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Our progress lines only: TensorFlow's Python logger is chatty at INFO under a strategy.
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stdout)
    logging.getLogger("covidct").setLevel(logging.INFO)
    parser = build_parser()
    parser.prog = prog
    args = parser.parse_args(argv)
    try:
        if getattr(args, "tensorflow", True) and not getattr(args, "dry_run", False):
            from job.quiet_tf import import_tensorflow

            import_tensorflow()  # without the no-GPU machine's cuInit noise
        return args.func(args)
    except UserError as e:  # ConfigError included: exit 2
        print(f"{prog}: error: {e}", file=sys.stderr)
        if isinstance(e, Preempted):  # uploads the grace budget could not wait for are abandoned
            exit_abandoning(e.exit_code)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
