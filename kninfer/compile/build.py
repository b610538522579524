"""`kninfer compile`'s steps: load, convert, verify, and only then write model.onnx and
compile.json (each written whole to a temporary file and renamed over the old one, so a reader
never sees half a file)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from kninfer.compile.errors import VerificationFailed
from kninfer.compile.graph import (
    convert,
    describe,
    opsets,
    output_specs,
    versions,
)
from kninfer.compile.record import ONNX_FILE, RECORD_FORMAT, Compiled, write_compiled
from kninfer.compile.rows import (
    Layout,
    RowSet,
    feed,
    fitted_facts,
    generated_rows,
    given_rows,
    joined,
    layout_of,
    note_declared,
    note_strings,
    read_table,
    undescribed,
)
from kninfer.compile.source import load_source
from kninfer.compile.verify import compare, expected_outputs, onnx_outputs, refusal
from kninfer.errors import InvalidInput
from kninfer.predictors.spec import declared_spec
from kninfer.storage import sha256_of

DEFAULT_ROWS = 1000
DEFAULT_TOLERANCE = 1e-5


def compile_model(
    model_dir: Path,
    out: Path | None = None,
    sample: Path | None = None,
    rtol: float = DEFAULT_TOLERANCE,
    atol: float = DEFAULT_TOLERANCE,
    rows: int = DEFAULT_ROWS,
    skops_trusted: str = "",
    torch_module: str | None = None,
    input_spec: str | None = None,
) -> Compiled:
    """Convert the model in `model_dir`, verify it on `rows` rows, write `out` (default
    MODEL_DIR/model.onnx) and compile.json beside it. Raises a KninferError and writes nothing
    when the model does not load, does not convert or does not verify. A PyTorch model
    directory (or `torch_module`, as `kninfer serve --torch-module`) is exported by
    kninfer.compile.torch_export. `input_spec` is `kninfer serve --input-spec`: it overrides
    kninfer.yaml's declarations, which the graph follows as serving does."""
    from kninfer.compile.torch_export import compile_pytorch, holds_torch_model

    if holds_torch_model(model_dir, torch_module):
        return compile_pytorch(model_dir, out, sample, rtol, atol, rows, torch_module, input_spec)
    source = load_source(model_dir, skops_trusted)
    estimator = source.estimator
    layout = layout_of(estimator)
    facts = fitted_facts(estimator, layout)
    table, given_as = _given_table(sample, source.example_file, layout)
    note_declared(declared_spec(input_spec, model_dir).inputs, layout)
    inputs = layout.inputs()  # after the given rows and the declarations named string columns
    outputs = output_specs(estimator)
    converted = convert(estimator, inputs, outputs)
    rowset = _verification_rows(table, given_as, layout, facts, rows)
    if given_as == "sample":
        rowset.sources[0]["file"] = str(sample)
    elif given_as == "input example" and source.example_file is not None:
        rowset.sources[0]["file"] = source.example_file.name
    expected = expected_outputs(estimator, rowset, outputs)
    actual = onnx_outputs(converted.session, feed(rowset, layout), outputs)
    classifier = getattr(estimator, "classes_", None) is not None
    report = compare(expected, actual, outputs, rowset.labels, rtol, atol, classifier)
    if not report.passed:
        raise VerificationFailed(refusal(report))

    target = out if out is not None else model_dir / ONNX_FILE
    graph = converted.model.SerializeToString()
    record = {
        "format": RECORD_FORMAT,
        "source": {
            "file": os.path.relpath(source.file, target.parent.resolve()),
            "sha256": sha256_of(source.file),
            "format": source.form,
            "estimator": describe(estimator),
        },
        "onnx": {
            "file": target.name,
            "sha256": hashlib.sha256(graph).hexdigest(),
            "opsets": opsets(converted.model),
            "numeric_inputs_converted_as": converted.precision,
        },
        "versions": {"kninfer": versions(["kninfer"])["kninfer"], **versions(converted.packages)},
        "inputs": [spec.metadata() for spec in inputs],
        "outputs": [spec.metadata() for spec in outputs],
        "verification": {
            "row_sources": rowset.sources,
            "rows_skipped": rowset.skipped,
            **report.record(),
        },
    }
    return write_compiled(target, graph, record, report, rowset)


def _given_table(
    sample: Path | None, example: Path | None, layout: Layout
) -> tuple[Any, str | None]:
    """The rows the user gave (--sample) or saved with the model (its input example), read
    before the conversion: their string columns are BYTES inputs."""
    if sample is not None:
        table = read_table(sample, layout)
        note_strings(table, layout)
        return table, "sample"
    if example is None:
        return None, None
    try:
        table = read_table(example, layout)
    except InvalidInput:
        return None, None  # an example that does not parse is left out, as serving does
    note_strings(table, layout)
    return table, "input example"


def _verification_rows(
    table: Any, given_as: str | None, layout: Layout, facts: dict[Any, Any], count: int
) -> RowSet:
    if given_as == "sample":
        rows = given_rows(table, layout, "sample", count)
        if not len(rows):
            raise InvalidInput(
                "the sample has no rows to verify on (a row with a missing string "
                "value is left out: an ONNX string tensor has none)"
            )
        return rows
    if given_as == "input example":
        try:
            example = given_rows(table, layout, "input example", count)
        except InvalidInput:
            example = None  # an example of other columns: generate instead
        if example is not None and len(example):
            if undescribed(layout, facts) or len(example) >= count:
                return example
            # A handful of example rows, topped up with generated ones.
            return joined(example, generated_rows(layout, facts, count - len(example)))
    return generated_rows(layout, facts, count)
