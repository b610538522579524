"""`kninfer audit`: audit a .skops model once and write a hash-pinned joblib copy that loads
fast (served with --model-sha256; kninfer.predictors.sklearn_audit)."""

from __future__ import annotations

import argparse
import sys

from kninfer._compat.argv import hide_argv_from_kserve


def cmd_audit(options: argparse.Namespace) -> int:
    from pathlib import Path

    from kninfer.errors import ModelLoadError

    hide_argv_from_kserve()  # `import kserve` parses sys.argv (kninfer._compat.argv)
    from kninfer.predictors.sklearn_audit import audit

    try:
        target, digest = audit(Path(options.model_dir), options.skops_trusted)
    except ModelLoadError as exc:
        print(f"kninfer audit: {exc}", file=sys.stderr)
        return 1
    print(f"{target}\nsha256 {digest}\nserve with --model-sha256 {digest} (KNINFER_MODEL_SHA256)")
    return 0
