"""kninfer.settings is the one reader of the environment, and every setting is a `kninfer serve`
option whose help names its variable."""

from __future__ import annotations

import ast
import io
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from tests.support.paths import ROOT

# prometheus_client's own contract: it reads PROMETHEUS_MULTIPROC_DIR when first imported, so
# kninfer.observability sets it (for --workers) and asks it; it is not a kninfer setting.
PROMETHEUS_CONTRACT = {
    "kninfer/observability/multiprocess.py",
    "kninfer/observability/prometheus.py",
}


def environment_readers() -> set[str]:
    readers = set()
    for path in sorted((ROOT / "kninfer").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in ("environ", "getenv")
                and isinstance(node.value, ast.Name)
                and node.value.id == "os"
            ):
                readers.add(str(path.relative_to(ROOT)))
    return readers


def test_only_settings_reads_the_environment() -> None:
    assert environment_readers() - PROMETHEUS_CONTRACT == {"kninfer/settings.py"}


def serve_help() -> str:
    from kninfer.cli import build_parser

    parser = build_parser()
    out = io.StringIO()
    with redirect_stdout(out), pytest.raises(SystemExit):
        parser.parse_args(["serve", "--help"])
    return " ".join(out.getvalue().split())  # argparse wraps lines


def test_every_setting_is_an_option_naming_its_variable() -> None:
    from kninfer.settings import ServeSettings

    text = serve_help()
    for name, info in ServeSettings.model_fields.items():
        assert f"--{name.replace('_', '-')}" in text, name
        # Knative's own variables keep their names (runtime-contract.md, "Process").
        # So do OpenTelemetry's (the SDK environment variable specification).
        variable = (
            name.upper()
            if name in ("k_service", "k_revision") or name.startswith("otel_")
            else f"KNINFER_{name.upper()}"
        )
        assert f"[env {variable}]" in text, name
        assert info.description, name


def test_k_service_comes_from_knatives_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from kninfer.settings import ServeSettings

    monkeypatch.setenv("K_SERVICE", "iris-predictor")
    monkeypatch.setenv("K_REVISION", "iris-predictor-00003")
    monkeypatch.setenv("KNINFER_EAGER_IMPORTS", "1")
    settings = ServeSettings(cache_dir=tmp_path)
    assert (settings.k_service, settings.k_revision, settings.eager_imports) == (
        "iris-predictor",
        "iris-predictor-00003",
        True,
    )
