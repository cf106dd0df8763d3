"""`python -m lovr_cli`: the same as the `lovr` command."""

import sys

from lovr_cli import main

if __name__ == "__main__":
    sys.exit(main())
