"""kninfer.fastimport: a scikit-learn service answers V1, V2 and predict_proba without ever
loading pandas (deferred while kserve and scikit-learn import), and a later real `import pandas`
in the same process gets the real module everywhere."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import ROOT, ServerProcess

ROW = [5.1, 3.5, 1.4, 0.2]


def test_served_sklearn_model_never_loads_pandas(iris_server: ServerProcess) -> None:
    v2 = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": ROW}],
          "outputs": [{"name": "predict"}, {"name": "predict_proba"}]}
    reply = httpx.post(f"{iris_server.url}/v2/models/iris/infer", json=v2, timeout=60)
    assert reply.status_code == 200
    assert [o["name"] for o in reply.json()["outputs"]] == ["predict", "predict_proba"]
    v1 = httpx.post(f"{iris_server.url}/v1/models/iris:predict", json={"instances": [ROW]},
                    timeout=60)
    assert v1.json() == {"predictions": [0]}
    assert iris_server.process is not None
    maps = Path(f"/proc/{iris_server.process.pid}/maps").read_text()
    assert "/pandas/_libs/" not in maps


def test_real_modules_after_the_window() -> None:
    code = """
import sys
from kninfer.fastimport import deferred_imports
with deferred_imports("sklearn.utils"):
    import kserve.errors, kserve.model_server, kserve.protocol.infer_type
assert not any(n == "pandas" or n.startswith(("fastapi", "kubernetes")) for n in sys.modules)
import pandas, fastapi.responses
from kserve.api.kserve_client import KServeClient
assert kserve.protocol.infer_type.pd.DataFrame is pandas.DataFrame
assert fastapi.responses.JSONResponse.__module__ == "starlette.responses"
assert KServeClient.__module__ == "kserve.api.kserve_client"
print("ok")
"""
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip() == "ok"
