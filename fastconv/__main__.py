"""``python -m fastconv``: see :mod:`fastconv.cli`."""

import sys

from fastconv.cli import main

if __name__ == "__main__":
    sys.exit(main())
