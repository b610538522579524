"""kninfer._compat.kserve_imports: a scikit-learn service answers V1, V2 and predict_proba
without ever loading pandas (deferred while kserve and scikit-learn import), and a later real
`import pandas` in the same process gets the real module everywhere."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.paths import ROOT
from tests.support.servers import ServerProcess

ROW = [5.1, 3.5, 1.4, 0.2]


def test_served_sklearn_model_never_loads_pandas(iris_server: ServerProcess) -> None:
    v2 = {
        "inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": ROW}],
        "outputs": [{"name": "predict"}, {"name": "predict_proba"}],
    }
    reply = httpx.post(f"{iris_server.url}/v2/models/iris/infer", json=v2, timeout=60)
    assert reply.status_code == 200
    assert [o["name"] for o in reply.json()["outputs"]] == ["predict", "predict_proba"]
    v1 = httpx.post(
        f"{iris_server.url}/v1/models/iris:predict", json={"instances": [ROW]}, timeout=60
    )
    assert v1.json() == {"predictions": [0]}
    assert iris_server.process is not None
    maps = Path(f"/proc/{iris_server.process.pid}/maps").read_text()
    assert "/pandas/_libs/" not in maps


def test_real_modules_after_the_window() -> None:
    code = """
import sys
from kninfer._compat.kserve_imports import deferred_imports
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
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip() == "ok"


# Modules the serve path defers (its docstring says who imports each and why).
DEFERRED = [
    "pandas",
    "fastapi",
    "kubernetes",
    "kserve.api_client",
    "kserve.configuration",
    "kserve.models",
    "kserve.protocol.rest.server",
    "kserve.protocol.rest.multiprocess.server",
    "kserve.protocol.rest.v2_datamodels",
    "kserve.protocol.rest.timeseries",
    "timing_asgi",
    "yaml",
    "psutil",
    "rich",
    "charset_normalizer",
    "urllib3",
    "dateutil",
    "certifi",
    "numpy.f2py",
    "numpy.testing",
    "unittest",
]

# Every placeholder class a module imported in the window keeps bound after it. A new entry here
# (a kserve or scikit-learn upgrade) needs checking: how the module uses the name at run time,
# and never in an `except` clause (CPython matches exceptions without __subclasscheck__).
EXPECTED_PLACEHOLDERS = [
    "joblib.externals.loky.process_executor.Process -> psutil.Process",
    "kserve.errors.JSONResponse -> fastapi.responses.JSONResponse",
    "kserve.model_server.FastAPI -> fastapi.FastAPI",
    "kserve.model_server.ORJSONResponse -> fastapi.responses.ORJSONResponse",
    "kserve.model_server.RESTServer -> kserve.protocol.rest.server.RESTServer",
    "kserve.model_server.RESTServerMultiProcess -> "
    "kserve.protocol.rest.multiprocess.server.RESTServerMultiProcess",
    "kserve.protocol.dataplane.InferenceRequest -> "
    "kserve.protocol.rest.v2_datamodels.InferenceRequest",
    "kserve.protocol.infer_type.InferenceRequest -> "
    "kserve.protocol.rest.v2_datamodels.InferenceRequest",
]


def _run(code: str, **env: str) -> str:
    import os

    run = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout


def test_serve_path_leaves_deferred_modules_unloaded(tmp_path: Path) -> None:
    """The real `serve()` (embedded iris, sklearn preloads) up to ready: none of DEFERRED is in
    sys.modules, and the placeholders still bound are exactly EXPECTED_PLACEHOLDERS."""
    from tests.support.servers import free_port

    code = f"""
import json, os, signal, sys, time
from kninfer.settings import ServeSettings
from kninfer.server.startup import serve
from kninfer._compat.kserve_imports import _LazyClass

def ready():
    import sklearn.linear_model  # what the iris model's unpickling imported
    bound = sorted(
        f"{{name}}.{{key}} -> {{'.'.join(value._kninfer_target)}}"
        for name, module in list(sys.modules.items()) for key, value in list(vars(module).items())
        if isinstance(value, _LazyClass) and "_kninfer_target" in vars(value))
    print(json.dumps({{"modules": sorted(sys.modules), "placeholders": bound}}), flush=True)
    os.kill(os.getpid(), signal.SIGTERM)

sys.argv = sys.argv[:1]
settings = ServeSettings(http_port={free_port()}, grpc_port={free_port()}, host="127.0.0.1",
                         cache_dir={str(tmp_path)!r})
sys.exit(serve(settings, time.perf_counter(), on_ready=ready))
"""
    import json

    out = _run(code)
    report = json.loads(next(line for line in out.splitlines() if line.startswith("{")))
    loaded = [
        name
        for name in DEFERRED
        if any(m == name or m.startswith(name + ".") for m in report["modules"])
    ]
    assert loaded == []
    assert "kserve" in report["modules"] and "sklearn.callback" in report["modules"]
    assert report["placeholders"] == EXPECTED_PLACEHOLDERS


def test_deferred_kserve_names_are_the_real_classes_after_the_window() -> None:
    code = """
import sys
from kninfer._compat.kserve_imports import deferred_imports, _LazyClass
with deferred_imports():
    import kserve
assert not any(n.startswith(("kserve.models", "kserve.api_client", "kserve.configuration",
                             "urllib3", "dateutil")) for n in sys.modules)
from kserve import ApiClient, Configuration, V1beta1PredictorSpec
import kserve.models
assert kserve.V1beta1InferenceService is kserve.models.V1beta1InferenceService
assert not isinstance(kserve.V1beta1InferenceService, _LazyClass)
assert ApiClient.__module__ == "kserve.api_client" and Configuration().host
assert "V1beta1InferenceService" in dir(kserve)
isvc = kserve.V1beta1InferenceService(api_version="serving.kserve.io/v1beta1",
                                      kind="InferenceService")
assert isvc.to_dict()["kind"] == "InferenceService"
assert V1beta1PredictorSpec.__module__ == "kserve.models.v1beta1_predictor_spec"
print("ok")
"""
    assert _run(code).strip() == "ok"


def test_placeholder_classes_answer_for_the_real_class_after_the_window() -> None:
    code = """
import sys
from kninfer._compat.kserve_imports import deferred_imports, _LazyClass
with deferred_imports():
    import kserve
    import kserve.protocol.dataplane as dataplane
    IR = dataplane.InferenceRequest
    assert isinstance(IR, _LazyClass)
    IR(anything=1)  # inside the window: any construction, and nothing is an instance
    assert not isinstance({}, IR)
V2 = "kserve.protocol.rest.v2_datamodels"
# isinstance on a class whose module was never loaded: False, and still not loaded
assert not isinstance({"inputs": []}, IR) and not issubclass(dict, IR)
assert V2 not in sys.modules
body = dataplane.DataPlane.decode(dataplane.DataPlane.__new__(dataplane.DataPlane),
                                  {"instances": [[1]]}, {}, "v1", "m")
assert body == ({"instances": [[1]]}, {}) and V2 not in sys.modules
# construction builds the real pydantic model; isinstance/issubclass/attributes follow it
request = IR(inputs=[{"name": "a", "shape": [1], "datatype": "FP32", "data": [1.0]}])
from kserve.protocol.rest.v2_datamodels import InferenceRequest
assert type(request) is InferenceRequest
assert isinstance(request, IR) and issubclass(InferenceRequest, IR)
assert "inputs" in IR.model_fields and IR.__name__ == "InferenceRequest"
import kserve.model_server as ms
from kserve.protocol.rest.server import RESTServer
assert ms.RESTServer.create_application is RESTServer.create_application
print("ok")
"""
    assert _run(code).strip() == "ok"


def test_yaml_psutil_rich_are_real_after_the_window() -> None:
    code = """
import os, sys
from kninfer._compat.kserve_imports import deferred_imports
with deferred_imports("sklearn.utils", "sklearn.callback", "sklearn.no_such_module"):
    import kserve
assert not any(n.split(".")[0] in ("yaml", "psutil", "rich", "charset_normalizer")
               for n in sys.modules)
import yaml, psutil, rich.progress, charset_normalizer
import kserve.logging
utils = sys.modules["kserve.utils.utils"]
assert type(yaml.safe_load) is not type and yaml.safe_load("a: 1") == {"a": 1}
assert kserve.logging.yaml.safe_load is yaml.safe_load
assert utils.psutil.Process is psutil.Process and utils.cpu_count() >= 1
from joblib.externals.loky import process_executor
me = process_executor.Process(os.getpid())  # the placeholder builds a real psutil.Process
assert isinstance(me, psutil.Process) and me.pid == os.getpid()
assert rich.progress.Progress.__module__ == "rich.progress"
import numpy
assert "numpy.testing" not in sys.modules and numpy.f2py.run_main.__module__ == "numpy.f2py.f2py2e"
numpy.testing.assert_array_equal(numpy.ones(2), numpy.ones(2))
import numpy.testing
assert numpy.testing is sys.modules["numpy.testing"] and "numpy.f2py" in sys.modules
import sklearn.linear_model, numpy as np
model = sklearn.linear_model.LogisticRegression().fit(np.eye(4), [0, 1, 0, 1])
assert model.predict(np.eye(4)).tolist() == [0, 1, 0, 1]
print("ok")
"""
    assert _run(code).strip() == "ok"


def test_eager_imports_turns_deferral_off() -> None:
    """KNINFER_EAGER_IMPORTS=1 reaches the shim through the settings object, as --eager-imports."""
    code = """
import sys
from kninfer._compat.kserve_imports import deferred_imports
from kninfer.settings import ServeSettings
with deferred_imports("sklearn.utils", "sklearn.callback", eager=ServeSettings().eager_imports):
    import kserve
assert all(n in sys.modules for n in ("yaml", "psutil", "rich", "kserve.models", "pandas",
                                      "kserve.protocol.rest.v2_datamodels"))
from kninfer._compat.kserve_imports import _LazyClass
assert not isinstance(sys.modules["kserve.protocol.dataplane"].InferenceRequest, _LazyClass)
print("ok")
"""
    assert _run(code, KNINFER_EAGER_IMPORTS="1").strip() == "ok"


def test_another_kserve_version_imports_eagerly_and_warns() -> None:
    """The shim is written for kserve 0.21: on any other version it stands aside (a plain
    import, every module real) and says so once, instead of failing start-up."""
    code = """
import logging, sys
logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="%(message)s")
import kninfer._compat as compat
assert compat.kserve_version().startswith("0.21") and compat.fenced()
compat.fenced.cache_clear()
compat.kserve_version = lambda: "0.99.0"
from kninfer._compat.kserve_imports import deferred_imports
with deferred_imports("sklearn.utils"):
    import kserve
assert "pandas" in sys.modules and "kserve.protocol.rest.v2_datamodels" in sys.modules
assert not compat.fenced()
print("ok")
"""
    output = _run(code).splitlines()
    assert output[-1] == "ok"
    assert output[:-1] == [
        "kserve 0.99.0 is installed; kninfer's workarounds were written for kserve 0.21.x, so "
        "they are off: kserve is imported eagerly and called through its own code paths (slower "
        "cold start and requests, same answers)"
    ]


def test_a_preload_whose_package_is_not_installed_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """scikit-learn is preloaded for a sklearn-family service whose directory is not known yet
    (--storage-uri); where it is not installed (the onnx image) the preload is skipped, but a
    module that fails on a missing import of its own still fails."""
    from kninfer._compat.kserve_imports import _preload

    _preload("kninfer_absent_package.utils")
    _preload("kninfer_absent_package")
    (tmp_path / "kninfer_broken_package").mkdir()
    (tmp_path / "kninfer_broken_package" / "__init__.py").write_text("import kninfer_absent_dep\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="kninfer_absent_dep"):
        _preload("kninfer_broken_package.utils")
