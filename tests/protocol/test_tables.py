"""The table codec (kninfer.protocol.tables): every form a table arrives in becomes the same typed
columns for a model's specs, and each mistake is a 400 naming the column or row. Pure functions,
so in process (the families' served answers are tested under tests/predictors)."""

from __future__ import annotations

import numpy as np
import pytest

from kninfer.errors import InvalidInput
from kninfer.protocol.mlflow_scoring import decode_invocation
from kninfer.protocol.tables import tabular_arrays
from kninfer.protocol.tensor import TensorSpec

SPECS = [
    TensorSpec("age", "FP64", (-1,)),
    TensorSpec("city", "BYTES", (-1,)),
    TensorSpec("visits", "INT64", (-1,)),
]
ROWS = [[31.5, "Oslo", 3], [47.0, "Lyon", 0]]
RECORDS = [dict(zip(["age", "city", "visits"], row, strict=True)) for row in ROWS]


def columns(payload: dict[str, object]) -> dict[str, list[object]]:
    arrays = tabular_arrays(payload, SPECS, "churn")
    assert arrays is not None
    return {name: array.tolist() for name, array in arrays.items()}


@pytest.mark.parametrize(
    "payload",
    [
        {"instances": RECORDS},
        {"instances": ROWS},
        {"dataframe_records": RECORDS},
        {"dataframe_split": {"columns": ["age", "city", "visits"], "data": ROWS}},
        {"dataframe_split": {"data": ROWS}},  # columns in the model's order
        {"inputs": {"age": [31.5, 47.0], "city": ["Oslo", "Lyon"], "visits": [3, 0]}},
    ],
    ids=["records", "rows", "dataframe_records", "split", "split-no-columns", "columnar"],
)
def test_every_form_is_the_same_columns(payload: dict[str, object]) -> None:
    assert columns(payload) == {"age": [31.5, 47.0], "city": ["Oslo", "Lyon"], "visits": [3, 0]}


def test_csv_cells_are_typed_by_the_specs() -> None:
    """MLflow's text/csv: every cell arrives as text and is typed by its column's spec, an empty
    numeric cell a missing value."""
    payload = decode_invocation(b"age,city,visits\n31.5,Oslo,3\n,Lyon,0\n", "text/csv")
    arrays = tabular_arrays(payload, SPECS, "churn")
    assert arrays is not None
    assert arrays["visits"].tolist() == [3, 0]
    assert arrays["city"].tolist() == ["Oslo", "Lyon"]
    assert arrays["age"][0] == 31.5 and np.isnan(arrays["age"][1])


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"instances": [{"age": 1.0, "city": "Oslo"}]}, "column 'visits' is missing in record 0"),
        ({"instances": [{**RECORDS[0], "zip": 1}]}, "unknown column(s) zip; model 'churn' takes"),
        ({"instances": [[31.5, "Oslo"]]}, "row 0 must be a list of 3 values"),
        ({"instances": []}, "'instances' is empty"),
        ({"dataframe_split": {"columns": ["age"], "data": [[1.0]]}}, "missing column(s) city"),
        ({"dataframe_records": {"age": 1}}, "'dataframe_records' must be a list of objects"),
        (
            {"inputs": {"age": [1.0], "city": ["Oslo", "Lyon"], "visits": [1]}},
            "columns must be lists of the same length",
        ),
    ],
)
def test_mistakes_name_the_column_or_row(payload: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        tabular_arrays(payload, SPECS, "churn")
    assert message in str(caught.value)


def test_rows_of_a_model_without_columns_are_not_a_table() -> None:
    """A model that states no columns reads plain rows as a tensor of its own."""
    assert tabular_arrays({"instances": [[1.0, 2.0]]}, [], "m") is None
