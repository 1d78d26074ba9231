"""``python -m distill3d``: the same command as ``distill3d``."""

import sys

from distill3d.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
