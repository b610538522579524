"""`kninfer audit`: turn a .skops model into an audited, hash-pinned joblib file that loads fast.

skops is the safe format (it refuses types it does not trust instead of running them), but it
rebuilds every object from its own schema: a 200-tree forest loads many times slower than with
joblib (bench/results/cold.md). The audit keeps the guarantee and drops the cost, once, when the
image or modelcar is built:

1. load MODEL_DIR/model.skops with skops, refusing untrusted types exactly as `kninfer serve`
   does (`--skops-trusted` lists the extra ones);
2. write what it built to MODEL_DIR/model.audited.joblib and print the file's sha256;
3. serve with `--model-sha256 <that hash>` (KNINFER_MODEL_SHA256, set in the manifest, not in
   the bucket): kninfer then loads the joblib file with joblib, and only if its sha256 is the
   pinned one. A file swapped in storage has another hash and is refused before anything is
   unpickled. Without the pin, model.skops is loaded with skops as before.
"""

from __future__ import annotations

from pathlib import Path


def audit(model_dir: Path, skops_trusted: str = "") -> tuple[Path, str]:
    """Load model_dir/model.skops with skops' type audit, write the audited joblib file;
    (its path, its sha256)."""
    import joblib

    from kninfer.errors import ModelLoadError
    from kninfer.predictors.sklearn import AUDITED_FILE, load_estimator
    from kninfer.storage import sha256_of

    source = model_dir / "model.skops"
    if not source.is_file():
        raise ModelLoadError(f"no model.skops in {model_dir}: the audit starts from a skops file")
    estimator = load_estimator(source, skops_trusted)
    target = model_dir / AUDITED_FILE
    joblib.dump(estimator, target)
    return target, sha256_of(target)
