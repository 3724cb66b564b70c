"""`python -m harness.campaign --config JSON --job N`: one job of a campaign (started by the parent)."""
import sys

from .job import job_main

sys.exit(job_main())
