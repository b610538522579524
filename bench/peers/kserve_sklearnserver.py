"""Peer for cold start: the start-up path of KServe's stock sklearnserver, which is not published
on PyPI (it ships only in KServe's runtime image). Like that server, this resolves the model
directory through kserve-storage's `Storage.download` (a local path is used in place),
joblib-loads the single model file, and answers V1/V2 through kserve.utils' generic
`get_predict_input` / `get_predict_response` helpers on `kserve.ModelServer`. Written for this
benchmark from the documented behaviour; run in bench/.venvs/kserve.
"""

import argparse
import os

import joblib
import kserve
from kserve import Model, ModelServer
from kserve.utils.utils import get_predict_input, get_predict_response
from kserve_storage import Storage


class SklearnServerModel(Model):
    def __init__(self, name: str, model_dir: str) -> None:
        super().__init__(name)
        self.model_dir = model_dir
        self.ready = False

    def load(self) -> bool:
        local = Storage.download(self.model_dir)
        files = [f for f in os.listdir(local) if f.endswith((".joblib", ".pkl", ".pickle"))]
        self._model = joblib.load(os.path.join(local, files[0]))
        self.ready = True
        return self.ready

    def predict(self, payload, headers=None):
        instances = get_predict_input(payload)
        return get_predict_response(payload, self._model.predict(instances), self.name)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(parents=[kserve.model_server.parser])
    parser.add_argument("--model_dir", required=True)
    args, _ = parser.parse_known_args()
    model = SklearnServerModel(args.model_name, args.model_dir)
    model.load()
    ModelServer(
        http_port=args.http_port, grpc_port=args.grpc_port, enable_grpc=args.enable_grpc
    ).start([model])
