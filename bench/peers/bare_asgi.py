"""Peer: the floor. A bare ASGI app (no framework) that imports scikit-learn, joblib-loads the
same model and calls `predict` for each V2 request; orjson for the body. Nothing a real service
needs (validation, errors, metrics) is here, so no real server can beat it: it measures what
uvicorn + predict cost on this machine. Run as `uvicorn bare_asgi:app` with MODEL_DIR set.
"""

import os

import joblib
import numpy as np
import orjson

model = joblib.load(os.path.join(os.environ["MODEL_DIR"], "model.joblib"))
_JSON = [(b"content-type", b"application/json")]


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
        tensor = orjson.loads(body)["inputs"][0]
        features = np.asarray(tensor["data"], dtype=np.float64).reshape(tensor["shape"])
        result = model.predict(features)
        payload = orjson.dumps(
            {
                "model_name": "iris",
                "outputs": [
                    {
                        "name": "predict",
                        "datatype": "INT64",
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
