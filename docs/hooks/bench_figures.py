"""MkDocs hook: serve the plots the bench commands write, without copying them into docs/.

The pages include the generated reports (bench/results/report.md, cold.md, ...) with
pymdownx.snippets. Those reports link their plots relative to themselves (`plot.png`,
`cold.png`), and an included file's links resolve against the page that includes it, which sits
at the top of docs/. So each bench/results/*.png is added to the site under its own name at the
top level, read from where the bench wrote it. A plot that is missing leaves its link
unresolved, and the strict build fails on it, as it does on a missing report (check_paths).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

RESULTS = Path("bench") / "results"  # relative to the repository root, as snippets' base_path


def on_files(files: Files, config: Any) -> Files:
    root = Path(config["config_file_path"]).parent
    for plot in sorted((root / RESULTS).glob("*.png")):
        if files.get_file_from_path(plot.name) is not None:
            raise ValueError(f"docs/{plot.name} would hide the generated {RESULTS / plot.name}")
        files.append(File.generated(config, plot.name, abs_src_path=str(plot)))
    return files
