"""The locks in requirements/ (docs/development.md#dependencies): each one satisfies
pyproject.toml's ranges for its extras, pins every package with hashes, and agrees with
requirements/all.txt, the resolution of record, on every version."""

from __future__ import annotations

import re
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support.paths import ROOT, lock_checker

REQUIREMENTS = ROOT / "requirements"
check = lock_checker()

# lock -> (extras, Python it is for)
LOCKS = {
    "all.txt": (
        ("dev", "pytorch", "mlflow", "storage", "onnx", "compile", "lightgbm", "xgboost", "otel"),
        "3.11",
    ),
    "dev.txt": (
        ("dev", "pytorch", "mlflow", "onnx", "compile", "lightgbm", "xgboost", "otel"),
        "3.11",
    ),
    "image-sklearn.txt": (("storage", "otel"), "3.11"),
    "image-mlflow.txt": (("mlflow", "storage", "otel"), "3.11"),
    "image-pytorch.txt": (("pytorch", "storage", "otel"), "3.11"),
    "image-all.txt": (("pytorch", "mlflow", "storage", "otel"), "3.11"),
    "image-onnx.txt": (("onnx", "storage", "otel"), "3.11"),
    "image-gpu.txt": (("pytorch", "storage"), "3.12"),
}


# Core requirements a lock leaves out on purpose (requirements/lock.sh's --excludes): the onnx
# image serves model.onnx through ONNX Runtime, which imports neither.
LEFT_OUT = {"image-onnx.txt": {"scikit-learn", "skops"}}


def project() -> dict:
    with (ROOT / "pyproject.toml").open("rb") as file:
        return tomllib.load(file)["project"]


def test_every_lock_is_listed_here() -> None:
    assert sorted(p.name for p in REQUIREMENTS.glob("*.txt")) == sorted(LOCKS)


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_lock_satisfies_pyprojects_ranges(lock: str) -> None:
    extras, python = LOCKS[lock]
    pins = check.locked(REQUIREMENTS / lock)
    wanted = [
        *project()["dependencies"],
        *(r for extra in extras for r in project()["optional-dependencies"][extra]),
    ]
    for text in wanted:
        requirement = Requirement(text)
        environment = {
            "python_version": python,
            "sys_platform": "linux",
            "platform_machine": "x86_64",
        }
        if requirement.marker and not requirement.marker.evaluate(environment):
            continue
        name = canonicalize_name(requirement.name)
        if name in LEFT_OUT.get(lock, ()):
            assert name not in pins, f"{lock} was to leave {name} out"
            continue
        assert name in pins, f"{lock} lacks {text}"
        # A local label (+cpu) is a build of the same release: the range speaks of the release.
        release = pins[name].split("+")[0]
        assert requirement.specifier.contains(release, prereleases=True), (
            f"{lock}: {name}=={pins[name]} is outside {text}"
        )


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_every_pin_carries_hashes(lock: str) -> None:
    text = (REQUIREMENTS / lock).read_text()
    entries = re.split(r"\n(?=[A-Za-z0-9])", text.strip())
    pinned = [e for e in entries if check.PIN.match(e)]
    assert len(pinned) == len(check.locked(REQUIREMENTS / lock)) > 10
    for entry in pinned:
        assert "--hash=sha256:" in entry, entry.splitlines()[0]


@pytest.mark.parametrize("lock", sorted(set(LOCKS) - {"all.txt"}))
def test_locks_take_their_versions_from_all(lock: str) -> None:
    record = check.locked(REQUIREMENTS / "all.txt")
    pins = check.locked(REQUIREMENTS / lock)
    if lock == "image-gpu.txt":  # its own torch (CUDA) and what that build brings
        pins = {n: v for n, v in pins.items() if n in record and n != "torch"}
    else:
        assert set(pins) <= set(record), set(pins) - set(record)
    assert {n: v for n, v in pins.items() if record[n] != v} == {}


def test_the_onnx_image_carries_onnx_runtime_and_no_other_framework() -> None:
    """The compiled-model image: ONNX Runtime and numpy, and neither scikit-learn nor what only
    it needs (scipy, threadpoolctl), nor torch or mlflow."""
    pins = check.locked(REQUIREMENTS / "image-onnx.txt")
    assert {"onnxruntime", "numpy", "kserve", "kserve-storage", "opentelemetry-sdk"} <= set(pins)
    heavy = {"scikit-learn", "skops", "scipy", "threadpoolctl", "torch", "mlflow-skinny", "mlflow"}
    assert heavy & set(pins) == set()
    # lock.sh leaves out exactly what LEFT_OUT says.
    script = (REQUIREMENTS / "lock.sh").read_text()
    (names,) = re.findall(r"^printf '%s\\n' (.+) > \"\$onnx_excludes\"$", script, re.M)
    assert set(names.split()) == LEFT_OUT["image-onnx.txt"]


def test_check_reports_each_difference() -> None:
    pins = {"numpy": "2.4.6", "torch": "2.13.0+cpu", "pip": "25.0"}
    have = {
        "numpy": "2.5.0",
        "torch": "2.13.0+cpu",
        "extra-pkg": "1.0",
        "pip": "25.0",
        "setuptools": "65.5.0",
    }
    assert check.differences(pins, have) == [
        "extra-pkg: lock (absent), installed 1.0",
        "numpy: lock 2.4.6, installed 2.5.0",
    ]
    assert check.canonical("Foo_Bar.baz") == "foo-bar-baz"
