"""Peer: KServe 0.21 custom model, the pattern from KServe's documentation ("Deploy a custom
Python model"): a `kserve.Model` subclass that joblib-loads the model in `load()` and answers
V1 (`instances`) and V2 (`InferRequest`) in `predict`. Run in its own virtualenv
(bench/.venvs/kserve) as `python kserve_custom.py --model_dir DIR --http_port N`.
"""

import argparse

import joblib
import kserve
import numpy as np
from kserve import InferRequest, InferResponse, Model, ModelServer
from kserve.utils.utils import generate_uuid


class IrisModel(Model):
    def __init__(self, name: str, model_dir: str) -> None:
        super().__init__(name)
        self.model_dir = model_dir
        self.model = None
        self.load()

    def load(self) -> bool:
        self.model = joblib.load(f"{self.model_dir}/model.joblib")
        self.ready = True
        return self.ready

    def predict(self, payload, headers=None):
        if isinstance(payload, InferRequest):
            features = payload.inputs[0].as_numpy()
            result = self.model.predict(features)
            response = InferResponse(
                response_id=payload.id or generate_uuid(), model_name=self.name, infer_outputs=[]
            )
            output = kserve.InferOutput(name="predict", shape=list(result.shape), datatype="INT64")
            output.set_data_from_numpy(result.astype(np.int64), binary_data=False)
            response.outputs.append(output)
            return response
        result = self.model.predict(np.asarray(payload["instances"]))
        return {"predictions": result.tolist()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(parents=[kserve.model_server.parser])
    parser.add_argument("--model_dir", required=True)
    args, _ = parser.parse_known_args()  # --model_name comes from KServe's parser
    model = IrisModel(args.model_name, args.model_dir)
    ModelServer(
        http_port=args.http_port, grpc_port=args.grpc_port, enable_grpc=args.enable_grpc
    ).start([model])
