"""Run tritonclient (NVIDIA's V2 client, HTTP or gRPC) in its own process.

tritonclient.grpc registers Triton's `inference.*` protobuf messages, which clash with KServe's
(same package, same names) in one descriptor pool; the test process has KServe's, so the client
runs here. Reads a JSON spec on stdin, prints a JSON result on stdout:

    {"protocol": "grpc" | "http", "url": "127.0.0.1:PORT", "model": "NAME",
     "inputs": [{"name", "datatype", "shape", "data"}], "outputs": ["NAME", ...],
     "parameters": {...}, "binary": true}
    -> {"outputs": {"NAME": [...]}} or {"error": "...", "status": "..."}
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np


def main() -> None:
    spec: dict[str, Any] = json.load(sys.stdin)
    if spec["protocol"] == "grpc":
        import tritonclient.grpc as client_module
        from tritonclient.utils import InferenceServerException
    else:
        import tritonclient.http as client_module  # type: ignore[no-redef]
        from tritonclient.utils import InferenceServerException
    client = client_module.InferenceServerClient(url=spec["url"])
    inputs = []
    for item in spec["inputs"]:
        tensor = client_module.InferInput(item["name"], item["shape"], item["datatype"])
        if item["datatype"] == "BYTES":
            array = np.asarray(item["data"], dtype=object).reshape(item["shape"])
        else:
            from tritonclient.utils import triton_to_np_dtype

            array = np.asarray(item["data"], dtype=triton_to_np_dtype(item["datatype"]))
            array = array.reshape(item["shape"])
        if spec["protocol"] == "http":
            tensor.set_data_from_numpy(array, binary_data=spec.get("binary", True))
        else:
            tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    outputs = [client_module.InferRequestedOutput(name) for name in spec.get("outputs", [])]
    try:
        result = client.infer(
            spec["model"], inputs, outputs=outputs or None, parameters=spec.get("parameters")
        )
    except InferenceServerException as exc:
        print(json.dumps({"error": exc.message(), "status": str(exc.status())}))
        return
    answer = {}
    for name in spec.get("outputs", []):
        array = result.as_numpy(name)
        answer[name] = [v.decode() if isinstance(v, bytes) else v for v in array.tolist()]
    print(json.dumps({"outputs": answer}))
    client.close()


if __name__ == "__main__":
    main()
