"""``python -m augment.synth``: render the embedded dataset (see augment.synth)."""

import sys

from augment.synth.cli import main

sys.exit(main())
