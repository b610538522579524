"""Every workaround for a library's internals or shortcomings, in one place, gated on the version
it was written for: KServe's here and in the modules named below, uvicorn's in `uvicorn_server`.

kninfer leans on KServe 0.21 for its `Model` contract, `InferRequest`/`InferResponse` types,
model registry and gRPC stubs. A few things it does go below KServe's public surface, for cold
start or for speed; each lives in this package and asks `fenced()` first:

- `kserve_imports`: defers the parts of `import kserve` a served model never uses (pandas, the
  Kubernetes client, FastAPI, ...), a third of the import time;
- `argv`: `import kserve` parses `sys.argv` with its own argparse at import time
  (kserve/model_server.py), so kninfer hides its own flags from it;
- `model_call`: the lean `kserve.Model.__call__` for predictors (the same histograms, a tenth
  of a batch-1 request less);
- `infer_types`: reading a gRPC-decoded `InferInput` without decoding it twice;
- `kserve_grpc`: Triton's double/uint64 request parameters, which KServe's proto lacks, and
  numpy outputs through `InferResponse.to_grpc` (public APIs only, so not gated).

`uvicorn_server` leaves signals to kninfer, closes listeners early and reads uvicorn's open
connections for the SIGTERM drain; it has its own `fenced()`, on uvicorn's version.

On a KServe version other than `WRITTEN_FOR`, `fenced()` is False: kninfer then imports kserve
eagerly and takes KServe's own code paths, slower but correct, and logs one warning saying so.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os

WRITTEN_FOR = "0.21"


@functools.cache
def kserve_version() -> str | None:
    """The installed kserve's version, read from its dist-info directory name without importing
    kserve or `importlib.metadata` (the latter costs ~30 ms of cold start here)."""
    spec = importlib.util.find_spec("kserve")
    if spec is None or spec.origin is None:
        return None
    site = os.path.dirname(os.path.dirname(spec.origin))
    for entry in os.listdir(site):
        if entry.startswith("kserve-") and entry.endswith(".dist-info"):
            return entry[len("kserve-") : -len(".dist-info")]
    from importlib import metadata  # an editable or unusual install: ask the slow way

    try:
        return metadata.version("kserve")
    except metadata.PackageNotFoundError:
        return None


@functools.cache
def fenced() -> bool:
    """Whether the workarounds here apply: the installed kserve is the `WRITTEN_FOR` series."""
    version = kserve_version()
    if version is not None and (version == WRITTEN_FOR or version.startswith(WRITTEN_FOR + ".")):
        return True
    logging.getLogger("kninfer").warning(
        "kserve %s is installed; kninfer's workarounds were written for kserve %s.x, so they "
        "are off: kserve is imported eagerly and called through its own code paths (slower "
        "cold start and requests, same answers)",
        version,
        WRITTEN_FOR,
    )
    return False
