"""`python -m controlplane ...` is the `vcluster-py` console script (used to spawn our own children)."""

import sys

from .cli import main

sys.exit(main())
