"""A training process that sends itself a real SIGTERM at a chosen instant (for the tests).

    python -m tests.preempt_at EPOCH STEP [--callback] -- covidct-train-args...

The signal is sent just before step STEP of epoch EPOCH runs, through `fit`'s `on_step` hook, so it
arrives while that step runs, exactly as a kubelet's would; EPOCH -1 sends none. `--callback`
passes `fit` an epoch callback, as a Ray Tune trial does (the loop then waits for each checkpoint
to be complete before reporting it); it prints each report's epoch and checkpoint. Exit codes
follow the CLI's contract (143 = preempted and safe).
"""

import logging
import os
import signal
import sys

from job import cli
from job.deadline import exit_abandoning
from job.errors import Preempted, UserError
from job.training.loop import fit


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stdout)
    logging.getLogger("covidct").setLevel(logging.INFO)  # the CLI's progress lines, as cli.main
    epoch, step = int(argv[0]), int(argv[1])
    options = argv[2 : argv.index("--")]
    args = cli.build_parser().parse_args(argv[argv.index("--") + 1 :])

    def hook(e: int, s: int) -> None:
        if (e, s) == (epoch, step):
            os.kill(os.getpid(), signal.SIGTERM)

    def report(r) -> None:
        print(f"reported epoch {r.epoch} checkpoint {r.checkpoint_dir}", flush=True)

    callbacks = [report] if "--callback" in options else []
    try:
        fit(cli.config_from_args(args, run_uri=args.run), callbacks=callbacks, on_step=hook)
    except UserError as error:
        print(f"covidct: error: {error}", file=sys.stderr)
        if isinstance(error, Preempted):  # as the CLI: abandoned uploads do not hold the exit
            exit_abandoning(error.exit_code)
        return error.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
