"""`python -m tune ...` is `covidct sweep ...` (what `ray job submit -- python -m tune` runs):
the same main, so logging, errors and exit codes are the same."""

import sys

from job.cli import main

sys.exit(main(["sweep", *sys.argv[1:]], prog="python -m tune"))
