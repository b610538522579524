"""What `kninfer compile` writes, for every model kind: model.onnx and compile.json beside it,
each written whole to a temporary file and renamed over the old one, so a reader never sees half
a file. kninfer.predictors.compiled_graph reads and checks them."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kninfer.compile.rows import RowSet
from kninfer.compile.verify import Report

ONNX_FILE = "model.onnx"
RECORD_FILE = "compile.json"
RECORD_FORMAT = 1


@dataclass
class Compiled:
    onnx_file: Path
    record_file: Path
    record: dict[str, Any]
    report: Report
    rows: RowSet


def write_compiled(
    target: Path, graph: bytes, record: dict[str, Any], report: Report, rows: RowSet
) -> Compiled:
    """The graph at `target` and `record` (which names it) as compile.json beside it."""
    record_file = target.parent / RECORD_FILE
    write_file(target, graph)
    write_file(record_file, (json.dumps(record, indent=2) + "\n").encode())
    return Compiled(target, record_file, record, report, rows)


def write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Opened as a new file, so it gets the umask's permissions (mkstemp's 0600 would leave the
    # graph unreadable to a server running as another user).
    temporary = path.parent / f".{path.name}.{os.getpid()}.tmp"
    try:
        with temporary.open("wb") as f:
            f.write(data)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
