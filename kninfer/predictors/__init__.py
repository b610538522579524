"""Model families. Each is one module with one `Predictor` subclass, imported only when served,
so a scikit-learn service never pays for importing torch or mlflow.

Each family has two runtimes behind it (--runtime): its framework, and, for a model compiled by
`kninfer compile`, its `model.onnx` through ONNX Runtime, which serves the same tensors without
importing the framework (`sklearn_runtime`: kninfer.predictors.sklearn_onnx; `mlflow_predictor`:
kninfer.predictors.mlflow_compiled, and kninfer.predictors.mlflow_onnx for the onnx flavor;
`pytorch_runtime`: kninfer.predictors.pytorch_onnx).
"""

from __future__ import annotations

import logging
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from kninfer.predictors.compiled_graph import ONNX_FILE
from kninfer.settings import PredictorFamily

if TYPE_CHECKING:
    from kninfer.predictors.base import Predictor
    from kninfer.settings import ServeSettings

logger = logging.getLogger("kninfer")

# One entry per `PredictorFamily` (kninfer.settings); tests/predictors check the two agree.
FAMILIES: dict[PredictorFamily, str] = {
    "sklearn": "kninfer.predictors.sklearn:SklearnPredictor",
    "mlflow": "kninfer.predictors.mlflow:MlflowPredictor",
    "pytorch": "kninfer.predictors.pytorch:PytorchPredictor",
}
ONNX_PREDICTOR = "kninfer.predictors.sklearn_onnx:OnnxSklearnPredictor"
# An MLflow model of the `onnx` flavor, through ONNX Runtime without MLflow.
MLFLOW_ONNX_PREDICTOR = "kninfer.predictors.mlflow_onnx:OnnxMlflowPredictor"
# An MLflow model of the `sklearn` flavor compiled by `kninfer compile`, likewise.
MLFLOW_COMPILED_PREDICTOR = "kninfer.predictors.mlflow_compiled:CompiledMlflowPredictor"
# A PyTorch model compiled by `kninfer compile`, without torch.
PYTORCH_ONNX_PREDICTOR = "kninfer.predictors.pytorch_onnx:OnnxPytorchPredictor"
# Where Linux exposes NVIDIA devices: `--device auto` would pick CUDA where one is present, so
# `--runtime auto` keeps a compiled PyTorch model on torch there (asked without importing torch).
NVIDIA_DEVICES = Path("/dev")


def predictor_class(
    family: str, model_dir: Path | None = None, settings: ServeSettings | None = None
) -> type[Predictor]:
    """The class `--predictor` names: a family, or `package.module:Class` for a subclass of
    `kninfer.Predictor` of the user's own (importable on PYTHONPATH or from a `module.py` in
    the model directory, searched first when given). Given the model directory and the
    settings, the sklearn family's runtime is chosen for it (`sklearn_runtime`)."""
    from kninfer.errors import ModelLoadError
    from kninfer.predictors.base import Predictor
    from kninfer.references import import_class

    target = FAMILIES.get(family, family)  # type: ignore[call-overload]
    if ":" not in target:
        choices = ", ".join(FAMILIES)
        raise ModelLoadError(
            f"unknown predictor '{family}'; choose one of {choices} or give package.module:Class"
        )
    if model_dir is not None and settings is not None:
        if family == "sklearn" and sklearn_runtime(model_dir, settings) == "onnx":
            target = ONNX_PREDICTOR
        elif family == "mlflow":
            target = mlflow_predictor(model_dir, settings)
        elif family == "pytorch" and pytorch_runtime(model_dir, settings) == "onnx":
            target = PYTORCH_ONNX_PREDICTOR
        elif family not in FAMILIES and settings.runtime == "onnx":
            raise ModelLoadError(
                f"--runtime onnx serves a model compiled by `kninfer compile` (--predictor "
                f"sklearn, mlflow or pytorch) or an MLflow model of the onnx flavor; "
                f"--predictor {family} has no ONNX runtime"
            )
    if family == "sklearn" and target != ONNX_PREDICTOR:
        require_sklearn(
            "serving the scikit-learn model"
            + (f" in {model_dir}" if model_dir is not None else ""),
            f"compile it with `kninfer compile` and serve its {ONNX_FILE} (--runtime onnx), "
            "which needs only ONNX Runtime",
        )
    cls = import_class(target, "predictor")
    if not (isinstance(cls, type) and issubclass(cls, Predictor)):
        raise ModelLoadError(f"'{target}' is not a subclass of kninfer.Predictor")
    result: type[Predictor] = cls
    return result


def require_sklearn(what: str, instead: str) -> None:
    """Refuse, in one line that says what to do instead, what needs scikit-learn where it is not
    installed (the onnx image carries ONNX Runtime and not scikit-learn): `what` needs it. Asks
    the import system only (nothing is imported)."""
    from importlib.util import find_spec

    if find_spec("sklearn") is None:
        from kninfer.errors import ModelLoadError

        raise ModelLoadError(f"{what} needs scikit-learn, which is not installed here; {instead}")


def sklearn_runtime(model_dir: Path, settings: ServeSettings) -> Literal["onnx", "native"]:
    """How the sklearn family serves `model_dir`: `--runtime onnx` or `native` as told; `auto`
    serves model.onnx when the directory has one (`_compiled_chosen`). Cheap, and imports
    nothing: kninfer.server.startup asks before it imports the server."""
    if settings.runtime != "auto":
        return settings.runtime
    return "onnx" if _compiled_chosen(model_dir, settings) else "native"


def _compiled_chosen(model_dir: Path, settings: ServeSettings) -> bool:
    """Under `--runtime auto`: whether `model_dir` holds a model.onnx to serve, unless
    --model-sha256 pins another file (the pin names the file to serve: a graph dropped beside a
    pinned model does not replace it)."""
    graph = model_dir / ONNX_FILE
    if not graph.is_file():
        return False
    pin = settings.model_sha256
    if pin and _file_sha256(graph) != pin.strip().lower():
        logger.info("%s is not the file --model-sha256 pins; serving the model's own file", graph)
        return False
    return True


def mlflow_predictor(model_dir: Path, settings: ServeSettings) -> str:
    """The class the mlflow family serves `model_dir` with, its MLmodel read once: through ONNX
    Runtime (`auto`, `onnx`) an MLflow model of the `onnx` flavor (kninfer.predictors.mlflow_onnx)
    or one of the `sklearn` flavor compiled by `kninfer compile` whose graph answers as its
    pyfunc does (kninfer.predictors.mlflow_compiled); anything else, or `native`, through
    `mlflow.pyfunc`. Under `--runtime onnx` a directory that is neither fails to load, saying
    so."""
    from kninfer.errors import ModelLoadError
    from kninfer.predictors.mlflow import find_mlmodel_dir
    from kninfer.predictors.mlflow_compiled import compiled_sklearn_refusal
    from kninfer.predictors.mlflow_onnx import mlmodel, onnx_graph_file

    if settings.runtime == "native":
        return FAMILIES["mlflow"]
    try:
        path = find_mlmodel_dir(model_dir)
        meta = mlmodel(path)
    except ModelLoadError:
        # The pyfunc path says what is wrong with the directory; under `onnx`, the graph's.
        return MLFLOW_ONNX_PREDICTOR if settings.runtime == "onnx" else FAMILIES["mlflow"]
    if onnx_graph_file(path, meta) is not None:
        return MLFLOW_ONNX_PREDICTOR
    if settings.runtime == "onnx":
        return MLFLOW_COMPILED_PREDICTOR  # its load says what is wrong with anything else
    if not _compiled_chosen(path, settings):
        return FAMILIES["mlflow"]
    refusal = compiled_sklearn_refusal(meta)
    if refusal is not None:
        logger.info(
            "%s is not served: %s (the graph would not answer as the model's pyfunc does); "
            "serving the model through mlflow.pyfunc",
            path / ONNX_FILE,
            refusal,
        )
        return FAMILIES["mlflow"]
    return MLFLOW_COMPILED_PREDICTOR


def pytorch_runtime(model_dir: Path, settings: ServeSettings) -> Literal["onnx", "native"]:
    """How the pytorch family serves `model_dir`: `--runtime onnx` or `native` as told; `auto`
    serves model.onnx (kninfer.predictors.pytorch_onnx) when the directory has one and the
    model is to run where the graph runs, on the CPU in float32: `--device cpu`, or `auto` on a
    machine without an NVIDIA device, and `--dtype float32`."""
    if settings.runtime != "auto":
        return settings.runtime
    on_cpu = settings.device == "cpu" or (settings.device == "auto" and not _nvidia_device())
    if not on_cpu or settings.dtype != "float32":
        return "native"
    return "onnx" if _compiled_chosen(model_dir, settings) else "native"


def _nvidia_device() -> bool:
    return any(NVIDIA_DEVICES.glob("nvidia[0-9]*"))


def serves_onnx(settings: ServeSettings) -> bool:
    """Whether `kninfer serve` will serve a model.onnx, as far as is known before the model
    directory is resolved: --runtime onnx, or auto with a local --model-dir that has one (a
    --storage-uri is only fetched later: counted as not)."""
    if settings.transformer is not None or settings.predictor not in (None, "sklearn"):
        return False
    if settings.runtime != "auto":
        return settings.runtime == "onnx"
    model_dir = settings.model_dir
    return (
        model_dir is not None
        and model_dir.is_dir()
        and sklearn_runtime(model_dir, settings) == "onnx"
    )


def _file_sha256(path: Path) -> str:
    stat = path.stat()
    return _sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@cache
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    """A file's sha256, once per version of it: start-up asks twice (serves_onnx, then
    predictor_class). The graph's load checks the bytes it read again, itself."""
    from kninfer.storage import sha256_of

    return sha256_of(Path(path))
