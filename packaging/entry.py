"""Entry point of the frozen app: the same as the `cxr-viewer` command."""

import multiprocessing
import sys

from cxr_viewer.cli import main

if __name__ == "__main__":
    multiprocessing.freeze_support()
    sys.exit(main())
