"""Peer: the floor for a compiled model. A bare ASGI app (no framework) that loads the same
`model.onnx` into an ONNX Runtime session set up as kninfer sets it up (one intra-op thread per
schedulable CPU, no spinning, all graph optimizations) and runs it for each V2 request; orjson
for the body. Nothing a real service needs (validation, errors, metrics, datatypes beyond the
benchmark's FP32, FP64, INT64 and BYTES) is here, so no real server can beat it: it measures what
uvicorn + the session cost on this machine. Run as `uvicorn bare_onnx:app` with MODEL_DIR set.
"""

import os

import numpy as np
import onnxruntime as ort
import orjson

_options = ort.SessionOptions()
_options.intra_op_num_threads = len(os.sched_getaffinity(0))
_options.inter_op_num_threads = 1
_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
_options.add_session_config_entry("session.intra_op.allow_spinning", "0")
_options.add_session_config_entry("session.inter_op.allow_spinning", "0")
session = ort.InferenceSession(
    os.path.join(os.environ["MODEL_DIR"], "model.onnx"),
    _options,
    providers=["CPUExecutionProvider"],
)
_DATATYPES = {
    "tensor(int64)": "INT64",
    "tensor(string)": "BYTES",
    "tensor(double)": "FP64",
    "tensor(float)": "FP32",
}
_DTYPES = {"tensor(string)": object, "tensor(float)": np.float32, "tensor(int64)": np.int64}
# A scikit-learn graph answers `predict` (what kninfer answers by default); any other graph (a
# PyTorch export) every output.
_NAMES = [o.name for o in session.get_outputs()]
_OUTPUTS = ["predict"] if "predict" in _NAMES else _NAMES
_OUTPUT_DATATYPES = {o.name: _DATATYPES[o.type] for o in session.get_outputs()}
_INPUT_DTYPES = {i.name: _DTYPES.get(i.type, np.float64) for i in session.get_inputs()}
_JSON = [(b"content-type", b"application/json")]


def _array(tensor):
    dtype = _INPUT_DTYPES[tensor["name"]]
    return np.asarray(tensor["data"], dtype=dtype).reshape(tensor["shape"])


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["method"] == "POST":
        feeds = {t["name"]: _array(t) for t in orjson.loads(body)["inputs"]}
        results = session.run(_OUTPUTS, feeds)
        payload = orjson.dumps(
            {
                "model_name": "iris",
                "outputs": [
                    {
                        "name": name,
                        "datatype": _OUTPUT_DATATYPES[name],
                        "shape": list(result.shape),
                        "data": result.reshape(-1).tolist(),
                    }
                    for name, result in zip(_OUTPUTS, results, strict=True)
                ],
            }
        )
    else:
        payload = b'{"ready":true}'
    await send({"type": "http.response.start", "status": 200, "headers": _JSON})
    await send({"type": "http.response.body", "body": payload})
