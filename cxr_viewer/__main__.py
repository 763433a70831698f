"""``python -m cxr_viewer`` — the same as the ``cxr-viewer`` command."""

import sys

from cxr_viewer.cli import main

if __name__ == "__main__":
    sys.exit(main())
