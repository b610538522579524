"""MLflow's scoring protocol payloads: what `mlflow models serve` takes on `POST /invocations`
(mlflow.pyfunc.scoring_server, MLflow 2.x/3.x), decoded to a V1 request (a dict) so every
family that reads a table or rows answers it. `application/json` with exactly one of
`dataframe_split`, `dataframe_records`, `instances`, `inputs`, plus optional `params`; or
`text/csv` (a header row, then rows). Routes are in kninfer.http.scoring.
"""

from __future__ import annotations

from typing import Any

from kninfer.errors import InvalidInput, UnsupportedMediaType
from kninfer.protocol.jsonio import loads_json
from kninfer.protocol.v1 import ROW_FORMATS, TABLE_FORMATS, CsvTable

CONTENT_TYPE_JSON = "application/json"
CONTENT_TYPE_CSV = "text/csv"

# mlflow.pyfunc.scoring_server.SUPPORTED_FORMATS, in its order
FORMATS = TABLE_FORMATS + ROW_FORMATS


def decode_invocation(body: bytes, content_type: str | None) -> dict[str, Any]:
    """An `/invocations` body as the V1 payload the model reads. Pure."""
    mime, _, rest = (content_type or "").partition(";")
    mime = mime.strip().lower()
    parameters = dict(p.strip().partition("=")[::2] for p in rest.split(";") if p.strip())
    charset = parameters.pop("charset", "utf-8").strip().lower()
    if charset != "utf-8":
        raise UnsupportedMediaType("The scoring server only supports UTF-8")
    if parameters:
        raise UnsupportedMediaType(f"Unrecognized content type parameters: {', '.join(parameters)}")
    if mime == CONTENT_TYPE_JSON:
        return _json_payload(body)
    if mime == CONTENT_TYPE_CSV:
        return _csv_payload(body)
    raise UnsupportedMediaType(
        "This predictor only supports the following content types: "
        f"{CONTENT_TYPE_JSON}, {CONTENT_TYPE_CSV}. Got '{content_type or ''}'."
    )


def _json_payload(body: bytes) -> dict[str, Any]:
    doc = loads_json(body, non_finite=True)  # as mlflow's json.loads: NaN for a missing value
    if not isinstance(doc, dict):
        raise InvalidInput(
            f"The input must be a JSON dictionary with exactly one of the input fields "
            f"{', '.join(FORMATS)}. Received a {type(doc).__name__}."
        )
    given = [k for k in FORMATS if k in doc]
    if len(given) != 1:
        raise InvalidInput(
            f"The input must be a JSON dictionary with exactly one of the input fields "
            f"{', '.join(FORMATS)}. Received dictionary with input fields: {list(doc)}."
        )
    payload = {given[0]: doc[given[0]]}
    if doc.get("params") is not None:
        payload["params"] = doc["params"]
    return payload


def _csv_payload(body: bytes) -> dict[str, Any]:
    import csv
    import io

    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("the CSV body is not UTF-8 text") from None
    rows = list(csv.reader(io.StringIO(text)))
    rows = [row for row in rows if row]
    if not rows:
        raise InvalidInput("the CSV body is empty; expected a header row, then rows")
    header, data = rows[0], rows[1:]
    if header and header[0] == "":
        # pandas.DataFrame.to_csv() writes the index as a first, unnamed column.
        header, data = header[1:], [row[1:] for row in data]
    for i, row in enumerate(data):
        if len(row) != len(header):
            raise InvalidInput(
                f"CSV row {i + 1} has {len(row)} values; the header names {len(header)}"
            )
    return {"dataframe_split": CsvTable(columns=header, data=data)}
