"""The docs site (mkdocs.yml, docs/) builds with `mkdocs build --strict`, as `make docs` runs it,
and the strict build really fails on what it is there to catch: a broken link, a missing anchor,
a benchmark report that is not there.

mkdocs runs from the directory holding mkdocs.yml: pymdownx.snippets resolves its base_path (".")
against the working directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import ROOT


def build(root: Path, site: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # mkdocs-material's banner, not a warning
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_docs_build_strictly(tmp_path: Path) -> None:
    done = build(ROOT, tmp_path / "site")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "site" / "index.html").is_file()
    # The generated reports are included, not pasted: the report's own sentence is on the page.
    performance = (tmp_path / "site" / "performance" / "index.html").read_text()
    assert "Command: <code>python -m bench.run" in performance


def copy_of_the_docs(dest: Path) -> Path:
    """mkdocs.yml, docs/, README.md (the quick start is included from it) and the bench reports
    and plots the pages include, in a new directory `dest`."""
    dest.mkdir()
    shutil.copy(ROOT / "mkdocs.yml", dest)
    shutil.copy(ROOT / "README.md", dest)
    shutil.copytree(ROOT / "docs", dest / "docs")
    results = dest / "bench" / "results"
    results.mkdir(parents=True)
    for report in [
        *(ROOT / "bench" / "results").glob("*.md"),
        *(ROOT / "bench" / "results").glob("*.png"),
    ]:
        shutil.copy(report, results)
    return dest


def append(page: Path, text: str) -> None:
    page.write_text(page.read_text() + f"\n{text}\n")


@pytest.mark.parametrize("case", ["broken link", "missing anchor", "missing report"])
def test_strict_build_fails(case: str, tmp_path: Path) -> None:
    root = copy_of_the_docs(tmp_path / "repo")
    if case == "broken link":
        append(root / "docs" / "serving.md", "[a page that is not there](no-such-page.md)")
        named = "no-such-page.md"
    elif case == "missing anchor":
        append(root / "docs" / "serving.md", "[no such section](mlflow.md#no-such-part)")
        named = "no-such-part"
    else:
        (root / "bench" / "results" / "cold.md").unlink()
        named = "bench/results/cold.md"
    done = build(root, tmp_path / "site")
    assert done.returncode != 0, done.stdout + done.stderr
    assert named in done.stdout + done.stderr, done.stdout + done.stderr
