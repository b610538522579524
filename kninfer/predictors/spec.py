"""Declared tensor specs: `--input-spec` (KNINFER_INPUT_SPEC) or a `kninfer.yaml` beside the model.

A TorchScript file or a bare `state_dict` carries no input names, datatypes or shapes, yet V2
model metadata must state them (Open Inference Protocol, "Model Metadata Response JSON Object")
and requests are checked against them. The declaration is YAML (so JSON works too):

    inputs:
      - {name: input-0, datatype: FP32, shape: [-1, 4]}     # -1: any size (dim 0 = batch)
    outputs:                                                # optional: found by a probe run
      - {name: output-0, datatype: FP32, shape: [-1, 3]}
    module: mypkg.models:MLP                                # eager models only
    module_kwargs: {hidden: 64}                             # passed to the class

`--input-spec` takes the same text inline (`--input-spec '[{name: x, datatype: FP32, shape:
[-1, 4]}]'`, a bare list meaning `inputs`) or a path to such a file; what it declares wins over
`kninfer.yaml`.

scikit-learn reads `inputs` too (kninfer.predictors.sklearn): a DataFrame model's column
datatypes, or the one input of a model fitted on an array (BYTES: it takes strings, as a text
pipeline does); a declaration the model cannot take fails the load.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kninfer.errors import ModelLoadError
from kninfer.protocol.tensor import V2_TO_NUMPY, TensorSpec

SPEC_FILE = "kninfer.yaml"
TOP_LEVEL_KEYS = frozenset({"inputs", "outputs", "module", "module_kwargs"})
TENSOR_KEYS = frozenset({"name", "datatype", "shape"})


@dataclass
class DeclaredSpec:
    inputs: list[TensorSpec] | None = None
    outputs: list[TensorSpec] | None = None
    module: str | None = None
    module_kwargs: dict[str, Any] = field(default_factory=dict)


def _tensor(item: Any, where: str) -> TensorSpec:
    if not isinstance(item, dict):
        raise ModelLoadError(f"{where}: each tensor must be a mapping with name, datatype, shape")
    unknown = set(item) - TENSOR_KEYS
    if unknown:
        raise ModelLoadError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))}; "
            f"expected {', '.join(sorted(TENSOR_KEYS))}"
        )
    name, datatype, shape = item.get("name"), item.get("datatype"), item.get("shape")
    if not isinstance(name, str) or not name:
        raise ModelLoadError(f"{where}: a tensor has no 'name'")
    if not isinstance(datatype, str) or datatype.upper() not in V2_TO_NUMPY:
        raise ModelLoadError(
            f"{where}: tensor '{name}' has datatype {datatype!r}; expected one of "
            f"{', '.join(V2_TO_NUMPY)} (for bfloat16 compute declare FP32 and pass "
            "--dtype bfloat16)"
        )
    if (
        not isinstance(shape, list)
        or not shape
        or not all(
            isinstance(d, int) and not isinstance(d, bool) and (d == -1 or d > 0) for d in shape
        )
    ):
        raise ModelLoadError(
            f"{where}: tensor '{name}' needs 'shape', a list of positive sizes or -1, "
            f"batch dimension first (e.g. [-1, 4]); got {shape!r}"
        )
    return TensorSpec(name, datatype.upper(), tuple(shape))


def _tensors(value: Any, key: str, where: str) -> list[TensorSpec]:
    if not isinstance(value, list) or not value:
        raise ModelLoadError(f"{where}: '{key}' must be a non-empty list of tensors")
    specs = [_tensor(item, where) for item in value]
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ModelLoadError(f"{where}: '{key}' names a tensor twice ({', '.join(names)})")
    return specs


def parse_spec(doc: Any, where: str) -> DeclaredSpec:
    """A DeclaredSpec from parsed YAML: a mapping (see module docstring) or a list of inputs."""
    if isinstance(doc, list):
        doc = {"inputs": doc}
    if not isinstance(doc, dict):
        raise ModelLoadError(f"{where}: expected a mapping with 'inputs' (and 'outputs')")
    unknown = set(doc) - TOP_LEVEL_KEYS
    if unknown:
        raise ModelLoadError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))}; "
            f"expected {', '.join(sorted(TOP_LEVEL_KEYS))}"
        )
    spec = DeclaredSpec()
    if "inputs" in doc:
        spec.inputs = _tensors(doc["inputs"], "inputs", where)
    if "outputs" in doc:
        spec.outputs = _tensors(doc["outputs"], "outputs", where)
    module = doc.get("module")
    if module is not None and (not isinstance(module, str) or ":" not in module):
        raise ModelLoadError(f"{where}: 'module' must be 'package.module:Class', got {module!r}")
    spec.module = module
    kwargs = doc.get("module_kwargs", {})
    if not isinstance(kwargs, dict):
        raise ModelLoadError(f"{where}: 'module_kwargs' must be a mapping")
    spec.module_kwargs = kwargs
    return spec


def _load_yaml(text: str, where: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ModelLoadError(f"{where} is not valid YAML/JSON: {exc}") from None


def declared_spec(input_spec: str | None, model_dir: Path) -> DeclaredSpec:
    """`kninfer.yaml` from `model_dir` (if present) overridden by `--input-spec`."""
    spec = DeclaredSpec()
    spec_file = model_dir / SPEC_FILE
    if spec_file.is_file():
        spec = parse_spec(_load_yaml(spec_file.read_text(), str(spec_file)), str(spec_file))
    if input_spec:
        candidate = Path(input_spec)
        is_file = len(input_spec) < 4096 and "\n" not in input_spec and candidate.is_file()
        where = str(candidate) if is_file else "--input-spec"
        text = candidate.read_text() if is_file else input_spec
        override = parse_spec(_load_yaml(text, where), where)
        spec.inputs = override.inputs or spec.inputs
        spec.outputs = override.outputs or spec.outputs
        spec.module = override.module or spec.module
        spec.module_kwargs = override.module_kwargs or spec.module_kwargs
    return spec
