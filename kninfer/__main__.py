"""`python -m kninfer` is the `kninfer` command."""

import sys

from kninfer.cli import main

sys.exit(main())
