"""The converted graph against the estimator, on the same rows.

Labels (`predict` of a classifier) must be equal on every row. Numbers (`predict_proba`, a
regressor's `predict`) must be close on every value as numpy.isclose has it:
|onnx - sklearn| <= atol + rtol * |sklearn|, NaN equal to NaN. The report keeps the largest
absolute and relative differences per output and, when something differs, the first rows that
do, each on one line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kninfer.compile.errors import STILL_SERVED, VerificationFailed
from kninfer.compile.rows import RowSet
from kninfer.errors import InvalidInput
from kninfer.protocol.tensor import TensorSpec

# Rows named in a failure report; the count of all differing rows comes after them.
ROWS_SHOWN = 5


@dataclass
class OutputCheck:
    name: str
    label: bool
    differing_rows: int = 0
    max_abs_diff: float = 0.0
    # Over values larger than atol: below it the absolute tolerance governs.
    max_rel_diff: float = 0.0
    # The largest |diff| / (atol + rtol * |expected|): at most 1 passes.
    tolerance_used: float = 0.0

    def record(self) -> dict[str, Any]:
        if self.label:
            return {"kind": "label", "differing_rows": self.differing_rows}
        return {
            "kind": "number",
            "differing_rows": self.differing_rows,
            "max_abs_diff": self.max_abs_diff,
            "max_rel_diff": self.max_rel_diff,
            "tolerance_used": self.tolerance_used,
        }


@dataclass
class Report:
    rows: int
    rtol: float
    atol: float
    checks: list[OutputCheck]
    # What the graph was compared with, for the messages.
    reference: str = "scikit-learn"
    differing_rows: int = 0
    lines: list[str] = field(default_factory=list)
    # How many of the differing rows `lines` names.
    rows_shown: int = 0

    @property
    def passed(self) -> bool:
        return self.differing_rows == 0

    def record(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "rtol": self.rtol,
            "atol": self.atol,
            "passed": self.passed,
            "differing_rows": self.differing_rows,
            "outputs": {c.name: c.record() for c in self.checks},
        }

    def summary(self) -> str:
        """One line: what was compared and how close it came."""
        parts = []
        for check in self.checks:
            if check.label:
                parts.append(
                    f"{check.name}: every label equal"
                    if not check.differing_rows
                    else f"{check.name}: {check.differing_rows} label(s) differ"
                )
            else:
                used = check.tolerance_used
                share = f"{used:.0%} of" if used <= 1 else f"{used:.3g} times"
                parts.append(
                    f"{check.name}: max |diff| {check.max_abs_diff:.3g}, {share} the tolerance"
                )
        return f"{'; '.join(parts)} (rtol {self.rtol:g}, atol {self.atol:g})"


def expected_outputs(estimator: Any, rows: RowSet, outputs: list[TensorSpec]) -> dict[str, Any]:
    """What scikit-learn answers on the rows, as kninfer's sklearn family calls it."""
    found: dict[str, Any] = {}
    try:
        for spec in outputs:
            found[spec.name] = np.asarray(getattr(estimator, spec.name)(rows.rows))
    except (ValueError, TypeError) as exc:  # check_array, an unknown category, mixed types
        raise InvalidInput(f"scikit-learn refused the verification rows: {exc}") from None
    return found


def onnx_outputs(
    session: Any,
    feed: dict[str, np.ndarray],
    outputs: list[TensorSpec],
    still_served: str = STILL_SERVED,
) -> dict[str, Any]:
    names = [spec.name for spec in outputs]
    try:
        values = session.run(names, feed)
    except Exception as exc:  # onnxruntime's own error types
        first = (str(exc).strip().splitlines() or [""])[0]
        raise VerificationFailed(
            f"ONNX Runtime could not run the converted graph on the "
            f"verification rows ({type(exc).__name__}: {first}); "
            f"{still_served}"
        ) from None
    return dict(zip(names, values, strict=True))


def compare(
    expected: dict[str, Any],
    actual: dict[str, Any],
    outputs: list[TensorSpec],
    labels: list[str],
    rtol: float,
    atol: float,
    classifier: bool,
    reference: str = "scikit-learn",
) -> Report:
    """`labels` names each row for the report; a `classifier`'s `predict` is its labels.
    `reference` names what gave `expected`."""
    count = len(labels)
    report = Report(count, rtol, atol, [], reference)
    bad_rows = np.zeros(count, dtype=bool)
    notes: dict[int, list[str]] = {}
    for spec in outputs:
        want, got = expected[spec.name], np.asarray(actual[spec.name])
        is_label = classifier and spec.name == "predict"
        check = OutputCheck(spec.name, is_label)
        report.checks.append(check)
        if got.size != want.size:
            check.differing_rows = count
            bad_rows[:] = True
            report.lines.append(
                f"{spec.name}: ONNX gave shape {list(got.shape)}, {reference} {list(want.shape)}"
            )
            continue
        got = got.reshape(want.shape)
        if is_label:
            differs = _label_differs(want, got)
            for row in np.flatnonzero(differs)[:ROWS_SHOWN].tolist():
                notes.setdefault(row, []).append(
                    f"{spec.name} is {_plain(got[row])!r} in ONNX, {_plain(want[row])!r} in "
                    f"{reference}{_tie(expected.get('predict_proba'), row)}"
                )
        else:
            differs = _numbers_differ(check, want, got, rtol, atol, notes, reference)
        check.differing_rows = int(differs.sum())
        bad_rows |= differs
    report.differing_rows = int(bad_rows.sum())
    shown = [row for row in np.flatnonzero(bad_rows).tolist() if row in notes][:ROWS_SHOWN]
    report.lines += [f"{labels[row]}: {'; '.join(notes[row])}" for row in shown]
    report.rows_shown = len(shown)
    return report


def _label_differs(want: np.ndarray, got: np.ndarray) -> np.ndarray:
    # As objects: a str label from ONNX equals numpy's str_, an int64 equals a Python int.
    equal = np.asarray(want, dtype=object) == np.asarray(got, dtype=object)
    same = np.asarray(equal, dtype=bool).reshape(len(want), -1).all(axis=1)
    return np.logical_not(same)


def _numbers_differ(
    check: OutputCheck,
    want: np.ndarray,
    got: np.ndarray,
    rtol: float,
    atol: float,
    notes: dict[int, list[str]],
    reference: str,
) -> np.ndarray:
    want = want.astype(np.float64).reshape(len(want), -1)
    got = got.astype(np.float64).reshape(len(got), -1)
    close = np.isclose(got, want, rtol=rtol, atol=atol, equal_nan=True)
    both_nan = np.isnan(got) & np.isnan(want)
    with np.errstate(invalid="ignore"):
        diff = np.where(both_nan, 0.0, np.abs(got - want))
        diff = np.where(np.isnan(diff), np.inf, diff)  # NaN on one side only
        scale = np.abs(want)
        large = scale > atol
        rel = np.divide(diff, scale, out=np.zeros_like(diff), where=large)
        allowed = atol + rtol * scale
        used = np.divide(diff, allowed, out=np.where(diff > 0, np.inf, 0.0), where=allowed > 0)
    if diff.size:
        check.max_abs_diff = float(diff.max())
        check.max_rel_diff = float(rel.max())
        check.tolerance_used = float(used.max())
    differs = ~close.all(axis=1)
    wide = want.shape[1] > 1
    for row in np.flatnonzero(differs)[:ROWS_SHOWN].tolist():
        column = int(np.argmax(np.where(close[row], -1.0, diff[row])))
        where = f"{check.name}[{column}]" if wide else check.name
        notes.setdefault(row, []).append(
            f"{where} is {got[row, column]:.9g} in ONNX, {want[row, column]:.9g} in "
            f"{reference} (differs by {diff[row, column]:.3g}, allowed "
            f"{allowed[row, column]:.3g})"
        )
    return np.asarray(differs)


def _tie(probabilities: Any, row: int) -> str:
    """Why a label may differ while every probability is close: scikit-learn's top two
    probabilities are equal (a forest with an even number of trees splitting its vote), and
    the graph's float32 sums break the tie the other way."""
    if probabilities is None:
        return ""
    top = np.sort(np.asarray(probabilities[row], dtype=np.float64))[::-1]
    if len(top) < 2 or not np.isclose(top[0], top[1], rtol=0, atol=1e-12):
        return ""
    return f" (a tie: scikit-learn's top two probabilities are both {top[0]:.9g})"


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def refusal(report: Report, still_served: str = STILL_SERVED) -> str:
    """The failure message: how many rows differ, the first ones, and what was not written."""
    head = (
        f"the ONNX graph disagrees with {report.reference} on {report.differing_rows} of "
        f"{report.rows} rows:"
    )
    more = report.differing_rows - report.rows_shown
    tail = [f"  ... and {more} more row(s)"] if more > 0 else []
    return "\n".join(
        [
            head,
            *(f"  {line}" for line in report.lines),
            *tail,
            report.summary(),
            f"{still_served}; --rtol/--atol set the tolerance",
        ]
    )
