"""`python -m tune ...` is `covidct sweep ...` (what `ray job submit -- python -m tune` runs)."""

import sys

from tune.cli import main

sys.exit(main())
