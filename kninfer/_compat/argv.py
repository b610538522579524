"""`import kserve` parses `sys.argv` with its own argparse at import time (kserve 0.21,
kserve/model_server.py: `parser.parse_known_args()` at module level), so a kninfer flag that
prefix-matches one of KServe's (`--work` for `--workers`) would be taken by it, and a value it
cannot parse ends the process. Every command that may import kserve hides its arguments first.

Not gated on the version: hiding the arguments is harmless whatever kserve does with them.
"""

from __future__ import annotations

import sys


def hide_argv_from_kserve() -> None:
    """Leave only the program name in `sys.argv` (kninfer has parsed its own already)."""
    del sys.argv[1:]
