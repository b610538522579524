"""Conversion with skl2onnx, and the edits that make the graph take and give what kninfer serves.

skl2onnx names a graph's inputs after its `initial_types` made into identifiers ("input-0"
becomes "input_0") and its outputs `label` / `probabilities` (classifiers, with ZipMap off: a
plain [N, n_classes] tensor) or `variable` ([N, 1] for a single-output regressor). The graph
written here takes the V2 inputs by their served names and datatypes (FP64, BYTES) and gives
`predict` and `predict_proba` in the served datatypes and shapes (FP64 [-1] for a regressor),
through Identity, Cast and Reshape nodes around the converted graph, so whoever serves
model.onnx maps nothing.

Numeric inputs are converted as doubles first: a linear model then computes in float64 as
scikit-learn does. Where ONNX Runtime has no double kernel for an operator of the graph (tree
ensembles, Imputer), it is converted again for float32, with a Cast from the FP64 input:
scikit-learn's trees compare float32 values too, and verification judges the result either way.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from kninfer.compile.errors import STILL_SERVED, NotConvertible
from kninfer.protocol.tensor import TensorSpec

PREDICT = "predict"
PREDICT_PROBA = "predict_proba"
# onnx.TensorProto element types (onnx.TensorProto.DOUBLE, ...), by V2 datatype; kept as
# numbers so this module imports onnx only when it converts.
ELEMENT_TYPE = {
    "FP32": 1,
    "UINT8": 2,
    "INT8": 3,
    "INT32": 6,
    "INT64": 7,
    "BYTES": 8,
    "BOOL": 9,
    "FP64": 11,
}
# ai.onnx.ml opset onnxmltools' LightGBM converter writes: it refuses newer ones.
ML_OPSET_FOR_BOOSTERS = 3
NO_CONVERTER = re.compile(r"shape calculator for type '<class '(?P<name>[\w.]+)'>'")
ONE_LINE = 200


@dataclass
class Converted:
    """A converted graph ready to run, and how it was made."""

    model: Any  # onnx.ModelProto
    session: Any  # onnxruntime.InferenceSession
    precision: str  # FP64 or FP32: what the numeric inputs are computed in
    packages: list[str]  # the converter packages used, for compile.json's versions


def output_specs(estimator: Any) -> list[TensorSpec]:
    """The outputs kninfer serves for the estimator (kninfer.predictors.sklearn): `predict`,
    and `predict_proba` for a classifier that has it."""
    classes = getattr(estimator, "classes_", None)
    if classes is None:
        width = int(getattr(_final(estimator), "n_outputs_", 1))
        return [TensorSpec(PREDICT, "FP64", (-1,) if width == 1 else (-1, width))]
    if isinstance(classes, list):
        raise NotConvertible(
            f"{describe(estimator)} is a multi-output classifier: kninfer "
            f"compile converts one label per row; {STILL_SERVED}"
        )
    import numpy as np

    kind = np.asarray(classes).dtype.kind
    label = {"U": "BYTES", "O": "BYTES", "S": "BYTES", "b": "BOOL", "f": "FP64"}.get(kind, "INT64")
    specs = [TensorSpec(PREDICT, label, (-1,))]
    if hasattr(estimator, PREDICT_PROBA):
        specs.append(TensorSpec(PREDICT_PROBA, "FP64", (-1, len(classes))))
    return specs


def convert(estimator: Any, inputs: list[TensorSpec], outputs: list[TensorSpec]) -> Converted:
    """The estimator as an ONNX graph with the V2 inputs and outputs, loaded in ONNX Runtime.
    Raises NotConvertible, one line naming the estimator, when either step fails."""
    failure = ""
    for precision in ("FP64", "FP32"):
        try:
            model, packages = _converted(estimator, inputs, precision)
        except NotConvertible:
            if precision == "FP64":
                continue  # a converter that takes float32 only
            raise
        try:
            exposed = _expose(model, inputs, outputs)
        except NotConvertible:
            raise
        except Exception as exc:  # onnx.checker's ValidationError on the edited graph
            raise NotConvertible(
                f"{describe(estimator)} converted, but its graph could not be "
                f"given the served inputs and outputs ({_first_line(exc)}); "
                f"{STILL_SERVED}"
            ) from None
        try:
            return Converted(exposed, session(exposed.SerializeToString()), precision, packages)
        except Exception as exc:  # onnxruntime's own error types: no kernel, a type mismatch
            failure = _first_line(exc)
    raise NotConvertible(
        f"{describe(estimator)} converted, but ONNX Runtime "
        f"{_version('onnxruntime')} cannot load the graph ({failure}); "
        f"{STILL_SERVED}"
    )


def _converted(estimator: Any, inputs: list[TensorSpec], precision: str) -> tuple[Any, list[str]]:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import (
        DoubleTensorType,
        FloatTensorType,
        StringTensorType,
    )

    numeric = DoubleTensorType if precision == "FP64" else FloatTensorType
    initial = [
        (
            spec.name,
            StringTensorType([None, 1])
            if spec.datatype == "BYTES"
            else numeric([None, spec.shape[1] if len(spec.shape) == 2 else 1]),
        )
        for spec in inputs
    ]
    packages = ["scikit-learn", "skl2onnx", "onnx", "onnxruntime"]
    target_opset: dict[str, int] | None = None
    if _register_lightgbm(estimator):
        import onnx
        from skl2onnx import get_latest_tested_opset_version

        packages += ["onnxmltools", "lightgbm"]
        main = min(get_latest_tested_opset_version(), onnx.defs.onnx_opset_version())
        target_opset = {"": main, "ai.onnx.ml": ML_OPSET_FOR_BOOSTERS}
    # A plain probability tensor instead of a list of {class: probability} maps.
    options = (
        {id(estimator): {"zipmap": False}}
        if getattr(estimator, "classes_", None) is not None
        else None
    )
    try:
        with warnings.catch_warnings():
            # The verification below judges the graph; converter warnings would only bury the
            # one line a failure prints.
            warnings.simplefilter("ignore")
            model = convert_sklearn(
                estimator, initial_types=initial, options=options, target_opset=target_opset
            )
    except Exception as exc:
        raise NotConvertible(failure_line(estimator, exc)) from None
    return model, packages


def failure_line(estimator: Any, exc: BaseException) -> str:
    """One line for a failed conversion, naming the estimator that failed: the one skl2onnx has
    no converter for, else the one whose converter raised (the `operator` its converter was
    called with), else the model's last step."""
    text = str(exc)
    missing = NO_CONVERTER.search(text)
    where = "" if _final(estimator) is estimator else f" (in {type(estimator).__name__})"
    skl2onnx = f"skl2onnx {_version('skl2onnx')}"
    if missing:
        name = missing["name"].rsplit(".", 1)[-1]
        return f"{name}{where} has no ONNX converter in {skl2onnx}; {STILL_SERVED}"
    name = _raising_estimator(exc) or type(_final(estimator)).__name__
    return (
        f"{name}{where} did not convert to ONNX with {skl2onnx} ({_first_line(exc)}); "
        f"{STILL_SERVED}"
    )


def _raising_estimator(exc: BaseException) -> str | None:
    """The class of the innermost estimator a skl2onnx converter was converting when `exc`
    was raised: converters take it as `operator.raw_operator`."""
    found = None
    trace = exc.__traceback__
    while trace is not None:
        operator = trace.tb_frame.f_locals.get("operator")
        raw = getattr(operator, "raw_operator", None)
        if raw is not None:
            found = type(raw).__name__
        trace = trace.tb_next
    return found


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[0].strip()}" if lines else type(exc).__name__
    return text if len(text) <= ONE_LINE else text[: ONE_LINE - 3] + "..."


def _final(estimator: Any) -> Any:
    step = estimator
    while hasattr(step, "steps") and step.steps:
        step = step.steps[-1][1]
    return step


def describe(estimator: Any, depth: int = 0) -> str:
    """The estimator's structure in class names: Pipeline(ColumnTransformer(...), ...)."""
    name = type(estimator).__name__
    if depth > 3:
        return name
    if hasattr(estimator, "steps"):
        inner = [describe(s, depth + 1) for _, s in estimator.steps if not isinstance(s, str)]
    elif hasattr(estimator, "transformers"):
        entries = getattr(estimator, "transformers_", estimator.transformers)
        inner = [describe(t, depth + 1) for _, t, _ in entries if not isinstance(t, str)]
    else:
        return name
    return f"{name}({', '.join(inner)})"


def _register_lightgbm(estimator: Any) -> bool:
    """Register onnxmltools' converters for the LightGBM estimators in the model, if any
    (skl2onnx has none of its own); whether there were any."""
    boosters = {
        type(s)
        for s in _parts(estimator)
        if type(s).__module__.startswith("lightgbm") and hasattr(s, "booster_")
    }
    if not boosters:
        return False
    try:
        from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm
        from skl2onnx import update_registered_converter
        from skl2onnx.common.shape_calculator import (
            calculate_linear_classifier_output_shapes,
            calculate_linear_regressor_output_shapes,
        )
    except ImportError:
        return False  # the conversion then names the LightGBM estimator as unconvertible
    for klass in boosters:
        classifier = hasattr(klass, "predict_proba")
        update_registered_converter(
            klass,
            f"LightGbm{klass.__name__}",
            calculate_linear_classifier_output_shapes
            if classifier
            else calculate_linear_regressor_output_shapes,
            convert_lightgbm,
            options={"nocl": [True, False], "zipmap": [True, False, "columns"]}
            if classifier
            else {"split": None},
        )
    return True


def _parts(step: Any) -> list[Any]:
    found = [step]
    if hasattr(step, "steps"):
        for _, inner in step.steps:
            found += _parts(inner)
    for _, inner, _ in getattr(step, "transformers_", ()):
        found += _parts(inner)
    return found


def _expose(model: Any, inputs: list[TensorSpec], outputs: list[TensorSpec]) -> Any:
    """The converted graph with the V2 inputs and outputs (see the module's docstring)."""
    import onnx
    from onnx import helper

    graph = model.graph
    taken = {v for node in graph.node for v in (*node.input, *node.output)}
    taken |= {i.name for i in graph.input} | {i.name for i in graph.initializer}
    clash = sorted({s.name for s in outputs} & {s.name for s in inputs})
    if clash:
        raise NotConvertible(
            f"a column is named {clash[0]!r}, which is also the name of an output; {STILL_SERVED}"
        )

    def fresh(base: str) -> str:
        name, n = base, 0
        while name in taken:
            n += 1
            name = f"{base}_{n}"
        taken.add(name)
        return name

    before: list[Any] = []
    new_inputs: list[Any] = []
    if len(graph.input) != len(inputs):
        raise NotConvertible(
            f"the converted graph has {len(graph.input)} inputs for "
            f"{len(inputs)} columns; {STILL_SERVED}"
        )
    for value, spec in zip(graph.input, inputs, strict=True):
        have = value.type.tensor_type.elem_type
        want = ELEMENT_TYPE[spec.datatype]
        # A DataFrame column is served as [N] and converted as [N, 1].
        column = len(spec.shape) == 1
        new_inputs.append(
            helper.make_tensor_value_info(
                spec.name, want, [None if d == -1 else d for d in spec.shape]
            )
        )
        internal = value.name
        if internal == spec.name and have == want and not column:
            continue
        if internal == spec.name:  # the same name for another value: its readers get a new one
            internal = fresh(f"{spec.name}_converted")
            for node in graph.node:
                node.input[:] = [internal if v == spec.name else v for v in node.input]
        elif spec.name in taken:
            raise NotConvertible(
                f"a column is named {spec.name!r}, a name the converted graph "
                f"uses inside; {STILL_SERVED}"
            )
        else:
            taken.add(spec.name)
        steps: list[tuple[str, list[str], dict[str, Any]]] = []
        if column:
            shape = fresh(f"{spec.name}_shape")
            graph.initializer.append(
                helper.make_tensor(shape, onnx.TensorProto.INT64, [2], [-1, 1])
            )
            steps.append(("Reshape", [shape], {}))
        if have != want:
            steps.append(("Cast", [], {"to": have}))
        if not steps:
            steps.append(("Identity", [], {}))
        current = spec.name
        for n, (op, extra, attributes) in enumerate(steps):
            result = internal if n == len(steps) - 1 else fresh(f"{spec.name}_{op.lower()}")
            before.append(helper.make_node(op, [current, *extra], [result], **attributes))
            current = result

    after: list[Any] = []
    new_outputs: list[Any] = []
    produced = list(graph.output)
    for value, spec in zip(produced, outputs, strict=False):
        current = value.name
        have = value.type.tensor_type.elem_type
        want = ELEMENT_TYPE[spec.datatype]
        if have != want:
            cast = fresh(f"{spec.name}_cast")
            after.append(helper.make_node("Cast", [current], [cast], to=want))
            current = cast
        dims = value.type.tensor_type.shape.dim
        if len(spec.shape) == 1 and len(dims) == 2:  # a regressor's [N, 1] served as [N]
            shape = fresh(f"{spec.name}_shape")
            graph.initializer.append(helper.make_tensor(shape, onnx.TensorProto.INT64, [1], [-1]))
            flat = fresh(f"{spec.name}_flat")
            after.append(helper.make_node("Reshape", [current, shape], [flat]))
            current = flat
        if current != spec.name:
            if spec.name in taken:
                raise NotConvertible(
                    f"the converted graph already uses the name {spec.name!r}; {STILL_SERVED}"
                )
            taken.add(spec.name)
            after.append(helper.make_node("Identity", [current], [spec.name]))
        new_outputs.append(
            helper.make_tensor_value_info(
                spec.name, want, [None if d == -1 else d for d in spec.shape]
            )
        )
    if len(new_outputs) != len(outputs):
        raise NotConvertible(
            f"the converted graph gives {len(produced)} outputs, not "
            f"{', '.join(s.name for s in outputs)}; {STILL_SERVED}"
        )
    nodes = [*before, *graph.node, *after]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.input[:]
    graph.input.extend(new_inputs)
    del graph.output[:]
    graph.output.extend(new_outputs)
    onnx.checker.check_model(model)
    return model


def session(model_bytes: bytes) -> Any:
    """An ONNX Runtime session on one CPU thread that sleeps when idle: the verification runs
    beside scikit-learn on a build machine, and a spinning pool would take a core from it."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only: the node placement notes are noise here
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def opsets(model: Any) -> dict[str, int]:
    """Domain -> opset version, by domain: skl2onnx lists them in no fixed order."""
    found = {(entry.domain or "ai.onnx"): int(entry.version) for entry in model.opset_import}
    return dict(sorted(found.items()))


def versions(packages: list[str]) -> dict[str, str]:
    return {name: _version(name) for name in packages}


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"
