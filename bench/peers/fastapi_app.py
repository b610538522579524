"""Peer: the plain FastAPI wrapper users write by hand. Pydantic request models for the V2
inference request, joblib model loaded at start-up, `predict` called inline. No metrics, no
error mapping, no batching: the baseline kninfer must match while giving every feature.
Run as `uvicorn fastapi_app:app` with MODEL_DIR set (bench/.venvs/fastapi).
"""

import os
from typing import Any

import joblib
import numpy as np
from fastapi import FastAPI
from pydantic import BaseModel

model = joblib.load(os.path.join(os.environ["MODEL_DIR"], "model.joblib"))
app = FastAPI()


class Tensor(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[Any]


class InferenceRequest(BaseModel):
    id: str | None = None
    inputs: list[Tensor]


@app.get("/v2/health/ready")
def ready() -> dict[str, bool]:
    return {"ready": True}


@app.post("/v2/models/{name}/infer")
async def infer(name: str, request: InferenceRequest) -> dict[str, Any]:
    tensor = request.inputs[0]
    features = np.asarray(tensor.data, dtype=np.float64).reshape(tensor.shape)
    result = model.predict(features)
    return {
        "model_name": name,
        "outputs": [
            {
                "name": "predict",
                "datatype": "INT64",
                "shape": list(result.shape),
                "data": result.tolist(),
            }
        ],
    }
