"""ONNX Runtime as a pod runs it, and what kninfer reads of an ONNX graph without the onnx package.

The session (`inference_session`) is sized for a container, not for the machine under it:

- intra-op threads = the CPUs the container may use (`container_cpus`: its cgroup CPU limit,
  cgroup v2 `cpu.max` or v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`, else the CPUs this process
  may run on, at least 1). ONNX Runtime's default is one thread per core of the node, which a
  pod limited to one CPU only gets throttled for;
- one inter-op thread, and neither pool spins while it waits for work
  (`session.intra_op.allow_spinning` / `session.inter_op.allow_spinning` "0"): a spinning pool
  keeps a core busy between requests, CPU a scale-to-zero service is billed for and a
  neighbouring process would rather have;
- every graph optimization (ORT_ENABLE_ALL), applied once when the session is built.

`graph_facts` reads the few facts serving needs from the graph's protobuf through a descriptor of
the handful of onnx.proto fields involved (protobuf is already installed, with ONNX Runtime and
gRPC); the `onnx` package belongs to the `compile` extra, not to serving. It tells which inputs
may carry NaN (every path from the input meets a NaN-replacing Imputer, or a tree ensemble that
routes missing values), and the categories the encoder of a string input knows: a valid value for
the warm-up row, and the values a request may send where the encoder refuses unknown ones.
"""

from __future__ import annotations

import math
import os
from collections import deque
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

CGROUP = Path("/sys/fs/cgroup")
ML_DOMAIN = "ai.onnx.ml"
# Ops through which a string input still is that one column: its categories are the encoder's.
PASS_THROUGH = frozenset(
    {"Identity", "Reshape", "Cast", "Squeeze", "Unsqueeze", "Flatten", "Gather"}
)
ENCODERS = {
    "OneHotEncoder": "cats_strings",
    "CategoryMapper": "cats_strings",
    "LabelEncoder": "keys_strings",
}
TREE_ENSEMBLES = frozenset({"TreeEnsembleClassifier", "TreeEnsembleRegressor", "TreeEnsemble"})
# ONNX Runtime's logging levels: 3 errors, 4 fatal only.
LOG_ERRORS = 3
LOG_FATAL = 4


# ONNX Runtime's type names (NodeArg.type) -> V2 datatypes.
ORT_TYPES = {
    "tensor(double)": "FP64",
    "tensor(float)": "FP32",
    "tensor(int64)": "INT64",
    "tensor(int32)": "INT32",
    "tensor(string)": "BYTES",
    "tensor(bool)": "BOOL",
}


def container_cpus(root: Path = CGROUP) -> int:
    """Whole CPUs this process may use: the cgroup CPU quota rounded down, capped by the CPUs
    it may be scheduled on; at least 1."""
    available = _schedulable_cpus()
    quota = _cgroup_quota(root)
    if quota is not None:
        available = min(available, max(1, math.floor(quota)))
    return max(1, available)


def _schedulable_cpus() -> int:
    # The affinity mask, not os.cpu_count(): a process pinned with taskset or a cpuset runs on
    # fewer CPUs than the machine has.
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _cgroup_quota(root: Path) -> float | None:
    """quota / period in CPUs, or None when no limit is set (or no cgroup file is readable)."""
    try:
        fields = (root / "cpu.max").read_text().split()  # cgroup v2: "max 100000", "200000 100000"
        if len(fields) == 2:
            return None if fields[0] == "max" else int(fields[0]) / int(fields[1])
    except (OSError, ValueError):
        pass
    for folder in (root / "cpu", root / "cpu,cpuacct", root):  # cgroup v1 mount points
        try:
            quota = int((folder / "cpu.cfs_quota_us").read_text())
            period = int((folder / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        return quota / period if quota > 0 and period > 0 else None
    return None


def inference_session(model: bytes | str, threads: int | None = None) -> Any:
    """An onnxruntime.InferenceSession on the CPU for the serialized graph `model`, or for the
    graph file at path `model` (whose external data files ONNX Runtime reads beside it)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads if threads is not None else container_cpus()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    # Errors reach the caller as exceptions; ONNX Runtime's own log lines would repeat them.
    options.log_severity_level = LOG_ERRORS
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def quiet_run_options() -> Any:
    """RunOptions for requests: a run that fails on a client's values (an unknown category) is
    answered as a 4xx, not also printed to stderr once per request."""
    import onnxruntime as ort

    options = ort.RunOptions()
    options.log_severity_level = LOG_FATAL
    return options


def run_errors() -> tuple[type[BaseException], ...]:
    """ONNX Runtime's errors for a run refused over its inputs' values (FAIL, INVALID_ARGUMENT
    statuses); anything else it raises is a server fault."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    return tuple(
        getattr(state, name)
        for name in ("Fail", "InvalidArgument")
        if isinstance(getattr(state, name, None), type)
    )


def run_error_text(exc: BaseException) -> str:
    """ONNX Runtime's message without its "[ONNXRuntimeError] : 1 : FAIL : " prefix."""
    text = str(exc).strip()
    if text.startswith("[ONNXRuntimeError]"):
        text = text.split(" : ", 3)[-1]
    return text


# ---- the graph ------------------------------------------------------------------------------


@dataclass
class GraphFacts:
    """What serving reads of a graph beyond ONNX Runtime's input and output lists."""

    # Inputs whose NaN values the graph replaces or routes before anything else sees them.
    nan_inputs: frozenset[str] = frozenset()
    # String input -> the categories of the encoder that reads it (as the column, unmixed).
    categories: dict[str, list[str]] = field(default_factory=dict)
    # String inputs whose encoder refuses a category it does not know (OneHotEncoder zeros=0:
    # scikit-learn's handle_unknown="error").
    strict: frozenset[str] = frozenset()


@dataclass
class _Node:
    op_type: str
    domain: str
    inputs: list[str]
    outputs: list[str]
    attributes: dict[str, Any]


def graph_facts(model: bytes) -> GraphFacts:
    """The GraphFacts of the serialized ModelProto `model`."""
    message = _model_class()()
    message.ParseFromString(model)
    graph = message.graph
    nodes = [
        _Node(
            n.op_type,
            n.domain,
            list(n.input),
            list(n.output),
            {a.name.decode(errors="replace"): a for a in n.attribute},
        )
        for n in graph.node
    ]
    readers: dict[str, list[_Node]] = {}
    for node in nodes:
        for name in node.inputs:
            readers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    inputs = [i.name for i in graph.input]
    encoders = {name: found for name in inputs if (found := _encoder(name, readers))}
    return GraphFacts(
        frozenset(name for name in inputs if _nan_handled(name, readers, outputs)),
        {name: _strings(node, ENCODERS[node.op_type]) for name, node in encoders.items()},
        frozenset(name for name, node in encoders.items() if _refuses_unknown(node)),
    )


def _nan_handled(name: str, readers: dict[str, list[_Node]], outputs: set[str]) -> bool:
    """Whether every path from value `name` to a graph output passes a node that handles NaN:
    a NaN that reaches an output any other way gives an answer scikit-learn would not."""
    queue, seen = deque([name]), {name}
    while queue:
        value = queue.popleft()
        if value in outputs:
            return False
        for node in readers.get(value, ()):
            if _handles_nan(node):
                continue
            for produced in node.outputs:
                if produced and produced not in seen:
                    seen.add(produced)
                    queue.append(produced)
    return True


def _handles_nan(node: _Node) -> bool:
    if node.domain != ML_DOMAIN:
        return False
    if node.op_type == "Imputer":  # skl2onnx's SimpleImputer: replaces `replaced_value_float`
        replaced = node.attributes.get("replaced_value_float")
        return replaced is not None and math.isnan(replaced.f)
    if node.op_type in TREE_ENSEMBLES:
        # A converter that kept scikit-learn's missing-value routing marks the nodes whose NaN
        # goes the "true" way; with none marked, NaN just fails every comparison.
        tracks = node.attributes.get("nodes_missing_value_tracks_true")
        return tracks is not None and any(tracks.ints)
    return False


def _encoder(name: str, readers: dict[str, list[_Node]]) -> _Node | None:
    """The encoder that reads input `name` as that one column (through reshapes and casts
    only), or None."""
    value = name
    while True:
        found = readers.get(value, [])
        if len(found) != 1 or not found[0].inputs or found[0].inputs[0] != value:
            return None
        node = found[0]
        if node.domain == ML_DOMAIN and node.op_type in ENCODERS:
            return node
        if (
            node.op_type not in PASS_THROUGH
            or node.domain not in ("", "ai.onnx")
            or len(node.outputs) != 1
        ):
            return None
        value = node.outputs[0]


def _strings(node: _Node, attribute: str) -> list[str]:
    found = node.attributes.get(attribute)
    return [s.decode(errors="replace") for s in found.strings] if found is not None else []


def _refuses_unknown(node: _Node) -> bool:
    zeros = node.attributes.get("zeros")
    # OneHotEncoder's `zeros` defaults to 1 (an unknown category encodes as zeros).
    return node.op_type == "OneHotEncoder" and zeros is not None and zeros.i == 0


@cache
def _model_class() -> Any:
    """A message class for the part of onnx.ModelProto read here (onnx/onnx.proto field
    numbers; the format keeps them for good). Every other field is skipped as unknown."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    f = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(
        name="kninfer_onnx_subset.proto", package="kninfer_onnx_subset", syntax="proto2"
    )

    one, many = f.LABEL_OPTIONAL, f.LABEL_REPEATED

    def message(name: str, *fields: tuple[str, int, int, int, str | None]) -> None:
        added = proto.message_type.add(name=name)
        for field_name, number, label, kind, type_name in fields:
            entry = added.field.add(name=field_name, number=number, label=label, type=kind)
            if type_name is not None:
                entry.type_name = f".kninfer_onnx_subset.{type_name}"

    # Bytes, not string: proto2 does not promise UTF-8, and a category may hold any bytes.
    message(
        "AttributeProto",
        ("name", 1, one, f.TYPE_BYTES, None),
        ("f", 2, one, f.TYPE_FLOAT, None),
        ("i", 3, one, f.TYPE_INT64, None),
        ("ints", 8, many, f.TYPE_INT64, None),
        ("strings", 9, many, f.TYPE_BYTES, None),
    )
    message(
        "NodeProto",
        ("input", 1, many, f.TYPE_STRING, None),
        ("output", 2, many, f.TYPE_STRING, None),
        ("op_type", 4, one, f.TYPE_STRING, None),
        ("attribute", 5, many, f.TYPE_MESSAGE, "AttributeProto"),
        ("domain", 7, one, f.TYPE_STRING, None),
    )
    message("ValueInfoProto", ("name", 1, one, f.TYPE_STRING, None))
    message(
        "GraphProto",
        ("node", 1, many, f.TYPE_MESSAGE, "NodeProto"),
        ("input", 11, many, f.TYPE_MESSAGE, "ValueInfoProto"),
        ("output", 12, many, f.TYPE_MESSAGE, "ValueInfoProto"),
    )
    message("ModelProto", ("graph", 7, one, f.TYPE_MESSAGE, "GraphProto"))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("kninfer_onnx_subset.ModelProto")
    )
