"""A graph written by `kninfer compile` (model.onnx) and its record (compile.json), read and
checked before any family serves it through ONNX Runtime.

The checks are the same for every family the compile takes (scikit-learn, an MLflow model of the
sklearn flavor, PyTorch): the graph is the one --model-sha256 pins, if one is pinned; compile.json
is beside it and describes this graph (its sha256); and the model file the graph was compiled
from, when it is still in the directory, is the one compiled (its sha256), so a graph left behind
by a retrained model is refused at start-up, never served. Each failure is a ModelLoadError that
says what to run instead; `native` names what `--runtime native` serves for the family.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kninfer.errors import ModelLoadError
from kninfer.storage import model_file, sha256_of

# The compiled form of a model and its record, beside it (kninfer.compile.record names the same
# files for the writing side).
ONNX_FILE = "model.onnx"
COMPILE_RECORD = "compile.json"


@dataclass(frozen=True)
class CompiledGraph:
    graph: bytes
    sha256: str
    record: dict[str, Any]

    def section(self, key: str) -> dict[str, Any]:
        """compile.json's object `key`, or an empty one."""
        return record_section(self.record, key)


def record_section(record: dict[str, Any], key: str) -> dict[str, Any]:
    value = record.get(key)
    return value if isinstance(value, dict) else {}


def read_compiled(model_dir: Path, pin: str | None, native: str) -> CompiledGraph:
    """model.onnx and compile.json from `model_dir`, checked (module docstring). `pin`:
    --model-sha256; `native`: what `--runtime native` serves, for the messages ("the
    scikit-learn file")."""
    graph = _read_graph(model_dir, native)
    digest = hashlib.sha256(graph).hexdigest()
    if pin and digest != pin.strip().lower():
        raise ModelLoadError(
            f"{ONNX_FILE} has sha256 {digest}, not the pinned {pin} (--model-sha256); refusing "
            f"to load it (--runtime native serves {native}, which the pin may name)"
        )
    return CompiledGraph(graph, digest, _read_record(model_dir, digest, native))


def _read_graph(model_dir: Path, native: str) -> bytes:
    if not (model_dir / ONNX_FILE).is_file():
        raise ModelLoadError(
            f"no {ONNX_FILE} in {model_dir}: --runtime onnx serves a model compiled with "
            f"`kninfer compile {model_dir}`; compile it first, or serve {native} with "
            "--runtime auto or native"
        )
    try:
        return model_file(model_dir, ONNX_FILE).read_bytes()
    except OSError as exc:
        raise ModelLoadError(f"cannot read {ONNX_FILE}: {exc}") from exc


def _read_record(model_dir: Path, digest: str, native: str) -> dict[str, Any]:
    path = model_dir / COMPILE_RECORD
    if not path.is_file():
        raise ModelLoadError(
            f"{ONNX_FILE} in {model_dir} has no {COMPILE_RECORD} beside it: kninfer serves "
            f"graphs written by `kninfer compile`, which writes both (--runtime native serves "
            f"{native})"
        )
    try:
        record = json.loads(model_file(model_dir, COMPILE_RECORD).read_text())
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read {COMPILE_RECORD}: {exc}") from exc
    if not isinstance(record, dict):
        raise ModelLoadError(f"{COMPILE_RECORD} is not a JSON object")
    onnx = record_section(record, "onnx")
    if onnx.get("sha256") != digest:
        raise ModelLoadError(
            f"{COMPILE_RECORD} describes another graph (sha256 {onnx.get('sha256')}), not this "
            f"{ONNX_FILE} ({digest}); run `kninfer compile {model_dir}` again, or serve "
            f"{native} with --runtime native"
        )
    source = record_section(record, "source")
    # The model file, and the code of an eager PyTorch module when it lay beside its weights.
    for file_key, sha_key in (("file", "sha256"), ("module_file", "module_sha256")):
        name, pinned = source.get(file_key), source.get(sha_key)
        if isinstance(name, str) and isinstance(pinned, str):
            _check_unchanged(model_dir, name, pinned)
    return record


def _check_unchanged(model_dir: Path, name: str, pinned: str) -> None:
    try:
        compiled_from = model_file(model_dir, name)
    except ModelLoadError:
        return  # compiled from outside the directory (--out): not here
    if compiled_from.is_file():
        now = sha256_of(compiled_from)
        if now != pinned:
            raise ModelLoadError(
                f"{ONNX_FILE} was compiled from {name} with sha256 {pinned}, but {name} now "
                f"has sha256 {now}: run `kninfer compile {model_dir}` again, or serve {name} "
                "with --runtime native"
            )
