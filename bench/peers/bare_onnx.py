"""Peer: the floor for a compiled model. A bare ASGI app (no framework) that loads the same
`model.onnx` into an ONNX Runtime session set up as kninfer sets it up (one intra-op thread per
schedulable CPU, no spinning, all graph optimizations) and runs it for each V2 request; orjson
for the body. Nothing a real service needs (validation, errors, metrics, datatypes beyond the
benchmark's FP64 and BYTES) is here, so no real server can beat it: it measures what uvicorn +
the session cost on this machine. Run as `uvicorn bare_onnx:app` with MODEL_DIR set.
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
_OUTPUT = "predict"
_DATATYPES = {"tensor(int64)": "INT64", "tensor(string)": "BYTES", "tensor(double)": "FP64"}
_OUTPUT_DATATYPE = _DATATYPES[next(o.type for o in session.get_outputs() if o.name == _OUTPUT)]
_JSON = [(b"content-type", b"application/json")]


def _array(tensor):
    dtype = object if tensor["datatype"] == "BYTES" else np.float64
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
        (result,) = session.run([_OUTPUT], feeds)
        payload = orjson.dumps(
            {
                "model_name": "iris",
                "outputs": [
                    {
                        "name": _OUTPUT,
                        "datatype": _OUTPUT_DATATYPE,
                        "shape": list(result.shape),
                        "data": result.tolist(),
                    }
                ],
            }
        )
    else:
        payload = b'{"ready":true}'
    await send({"type": "http.response.start", "status": 200, "headers": _JSON})
    await send({"type": "http.response.body", "body": payload})
