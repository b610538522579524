"""Multi-process metrics set-up, kept apart from kninfer.observability because it must run before
prometheus_client is imported (prometheus_client chooses its value class, in-memory or mmap
files under PROMETHEUS_MULTIPROC_DIR, when it is first imported; docs, "Multiprocess Mode")."""

from __future__ import annotations

import logging
import os
import sys
import tempfile


def prepare_multiprocess(workers: int) -> None:
    """Give several workers one metrics directory, so /metrics aggregates them all.

    With one worker, or when the user already set PROMETHEUS_MULTIPROC_DIR, nothing changes.
    """
    if workers <= 1 or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    if "prometheus_client" in sys.modules:
        logging.getLogger("kninfer").warning(
            "prometheus_client was imported before PROMETHEUS_MULTIPROC_DIR was set; "
            "/metrics will show one worker's samples"
        )
        return
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="kninfer-metrics-")
