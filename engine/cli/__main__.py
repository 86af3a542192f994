"""`python -m engine.cli`: the `inferdeck` command."""

import sys

from engine.cli.main import main

sys.exit(main())
