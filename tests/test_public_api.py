"""kninfer's public API (kninfer/__init__.py, docs/api.md): what a person writing a predictor or a
transformer imports. Its names and signatures are a snapshot (tests/public_api.json), so a change
to them is deliberate: `pytest tests/test_public_api.py --write-api-snapshot` writes the new one
for review. `import kninfer` imports no framework, and the paths the docs showed before the layout
change still import, with a DeprecationWarning naming the new path."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import warnings
from typing import Any

import pytest

import kninfer
from tests.support.paths import ROOT

SNAPSHOT = ROOT / "tests" / "public_api.json"


def surface(value: Any) -> Any:
    """A name's promise: a function's signature; a class's bases and the signatures of the public
    methods and properties kninfer's own classes define (not kserve's)."""
    if not inspect.isclass(value):
        return str(inspect.signature(value))
    members: dict[str, str] = {}
    for klass in reversed(value.__mro__):
        if not klass.__module__.startswith("kninfer"):
            continue
        for name, member in vars(klass).items():
            if name.startswith("_") and name != "__init__":
                continue
            if isinstance(member, property):
                members[name] = "property"
            elif isinstance(member, staticmethod | classmethod):
                members[name] = str(inspect.signature(member.__func__))
            elif inspect.isfunction(member):
                members[name] = str(inspect.signature(member))
    return {
        "bases": [f"{b.__module__}.{b.__qualname__}" for b in value.__bases__],
        "members": dict(sorted(members.items())),
    }


def current() -> dict[str, Any]:
    return {
        name: surface(getattr(kninfer, name)) for name in kninfer.__all__ if name != "__version__"
    }


def test_public_api_is_the_snapshot(pytestconfig: pytest.Config) -> None:
    now = current()
    if pytestconfig.getoption("--write-api-snapshot"):
        SNAPSHOT.write_text(json.dumps(now, indent=2, sort_keys=True) + "\n")
    assert now == json.loads(SNAPSHOT.read_text()), (
        "kninfer's public API changed; if on purpose, run pytest tests/test_public_api.py "
        "--write-api-snapshot and say so in the docs (a public name is a promise)"
    )


def test_all_lists_exactly_the_lazily_imported_names() -> None:
    assert sorted(kninfer.__all__) == sorted(["__version__", *kninfer._PUBLIC])


def test_every_public_name_is_documented() -> None:
    api = (ROOT / "docs" / "api.md").read_text()
    for name in kninfer.__all__:
        if name != "__version__":
            assert f"`kninfer.{name}`" in api, name


def test_import_kninfer_imports_no_framework() -> None:
    code = (
        "import sys, kninfer; heavy = ['kserve', 'numpy', 'sklearn', 'torch', 'mlflow', "
        "'starlette', 'grpc']; print([m for m in heavy if m in sys.modules])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=ROOT,
    )
    assert done.stdout.strip() == "[]"


def test_public_names_are_the_modules_own() -> None:
    from kninfer.errors import InvalidInput
    from kninfer.protocol.v2 import input_array
    from kninfer.transformers.base import Transformer

    assert (kninfer.Transformer, kninfer.InvalidInput, kninfer.input_array) == (
        Transformer,
        InvalidInput,
        input_array,
    )
    assert kninfer.InvalidInput("x").status_code == 400
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        kninfer.Nope  # noqa: B018


@pytest.mark.parametrize(
    ("old", "name", "new"),
    [
        ("kninfer.tensor", "TensorSpec", "kninfer.TensorSpec"),
        ("kninfer.codec", "input_array", "kninfer.input_array"),
        ("kninfer.codec", "decode_v2_request", "kninfer.protocol.v2.decode_v2_request"),
        ("kninfer.codec", "loads_json", "kninfer.protocol.jsonio.loads_json"),
    ],
)
def test_old_paths_import_with_a_deprecation_warning(old: str, name: str, new: str) -> None:
    import importlib

    module = importlib.import_module(old)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = getattr(module, name)
    assert [w.category for w in caught] == [DeprecationWarning]
    assert f"{old}.{name} moved to {new}" in str(caught[0].message)
    new_module, _, new_name = new.rpartition(".")
    assert value is getattr(importlib.import_module(new_module), new_name)
