"""`python -m job ...` is `covidct ...`."""

import sys

from job.cli import main

sys.exit(main())
