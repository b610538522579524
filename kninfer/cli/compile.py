"""`kninfer compile`: a scikit-learn or PyTorch model as model.onnx, verified against the model
before it is written (kninfer.compile, docs/compile.md). Registering the command imports nothing
heavy.

Exit status: 0 written; 1 the model did not load, convert or verify (nothing written); 2 the
rows to verify on are missing or unusable (a bad --sample, or none can be generated).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kninfer._compat.argv import hide_argv_from_kserve

DEFAULT_ROWS = 1000  # kninfer.compile.build.DEFAULT_ROWS, repeated so `--help` imports nothing
DEFAULT_TOLERANCE = 1e-5


def add_compile_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    compile_ = sub.add_parser(
        "compile",
        help="convert a scikit-learn or PyTorch model to ONNX (model.onnx), verified "
        "against the model on real rows before it is written",
        description="Converts the model in MODEL_DIR (a scikit-learn file: model.skops, "
        "model.joblib, ...; an MLflow model of the sklearn flavor; or a PyTorch model as "
        "`kninfer serve --predictor pytorch` serves it) with skl2onnx or torch.onnx.export, "
        "runs both on the same rows and writes model.onnx and compile.json only if every "
        "label is equal and every number within tolerance.",
    )
    compile_.add_argument("model_dir", type=Path, metavar="MODEL_DIR")
    compile_.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="the graph to write (default: MODEL_DIR/model.onnx); "
        "compile.json is written beside it",
    )
    compile_.add_argument(
        "--sample",
        type=Path,
        metavar="FILE",
        help="rows to verify on: .csv with a header row, .parquet or .json "
        '(records, or {"columns": [...], "data": [[...]]}); for a PyTorch model .npz or '
        ".json with a list of rows per input name; default: the model's input example, "
        "else rows generated from what the fitted model knows of each column (PyTorch: "
        "from the declared shapes)",
    )
    compile_.add_argument(
        "--rtol",
        type=_tolerance,
        default=DEFAULT_TOLERANCE,
        help="relative tolerance for probabilities and regression outputs (default: %(default)g)",
    )
    compile_.add_argument(
        "--atol",
        type=_tolerance,
        default=DEFAULT_TOLERANCE,
        help="absolute tolerance (default: %(default)g)",
    )
    compile_.add_argument(
        "--rows",
        type=_positive,
        default=DEFAULT_ROWS,
        metavar="N",
        help="rows to verify on: the sample's first N; else the input "
        "example's, topped up to N with generated rows; else N "
        "generated (default: %(default)s)",
    )
    compile_.add_argument(
        "--skops-trusted",
        default=None,
        help="comma-separated types a .skops file may hold beyond skops' "
        "trusted list (default: $KNINFER_SKOPS_TRUSTED, as serve)",
    )
    compile_.add_argument(
        "--input-spec",
        default=None,
        metavar="SPEC",
        help="the inputs as `kninfer serve --input-spec` declares them (YAML or JSON, or a file "
        "of it), over kninfer.yaml's: a DataFrame column declared BYTES is a string input of "
        "the graph; a PyTorch model's names, datatypes and shapes",
    )
    compile_.add_argument(
        "--torch-module",
        default=None,
        metavar="MODULE:CLASS",
        help="a PyTorch model's class, for weights saved as a state_dict (as serve's "
        "--torch-module; default: kninfer.yaml's module)",
    )
    compile_.set_defaults(handler=cmd_compile)


def _tolerance(text: str) -> float:
    value = float(text)
    if not value >= 0:  # also refuses NaN
        raise argparse.ArgumentTypeError(f"{text}: a tolerance is a number >= 0")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: at least 1 row")
    return value


def _skops_trusted(given: str | None) -> str:
    """--skops-trusted, else what `kninfer serve` trusts (KNINFER_SKOPS_TRUSTED, read by the
    one settings reader)."""
    if given is not None:
        return given
    from kninfer.settings import skops_trusted_from_env

    return skops_trusted_from_env()


def cmd_compile(options: argparse.Namespace) -> int:
    hide_argv_from_kserve()  # loading the model imports the sklearn family, which imports kserve
    from kninfer.compile.build import compile_model
    from kninfer.compile.record import ONNX_FILE
    from kninfer.errors import InvalidInput, KninferError

    target = options.out if options.out is not None else options.model_dir / ONNX_FILE
    try:
        done = compile_model(
            options.model_dir,
            out=options.out,
            sample=options.sample,
            rtol=options.rtol,
            atol=options.atol,
            rows=options.rows,
            skops_trusted=_skops_trusted(options.skops_trusted),
            torch_module=options.torch_module,
            input_spec=options.input_spec,
        )
    except KninferError as exc:
        print(f"kninfer compile: {exc}", file=sys.stderr)
        if target.is_file():
            print(
                f"kninfer compile: the earlier {target} is left as it was; its compile.json "
                "names the source it was made from",
                file=sys.stderr,
            )
        return 2 if isinstance(exc, InvalidInput) else 1
    record = done.record
    counts = ", ".join(f"{s['rows']} {s['source']}" for s in record["verification"]["row_sources"])
    skipped = done.rows.skipped
    print(
        f"verified {len(done.rows)} rows ({counts}"
        f"{f'; {skipped} left out: a missing string value' if skipped else ''})"
    )
    print(done.report.summary())
    onnx = record["onnx"]
    sets = ", ".join(f"{domain} {number}" for domain, number in onnx["opsets"].items())
    print(
        f"wrote {done.onnx_file} (numeric inputs converted as "
        f"{onnx['numeric_inputs_converted_as']}; opsets {sets})"
    )
    print(
        f"wrote {done.record_file} (source {record['source']['file']}, sha256 "
        f"{record['source']['sha256']})"
    )
    return 0
