"""The benchmark harness keeps working: a tiny `bench.run --quick` against kninfer and the bare
ASGI floor (both on the project's interpreter, so no peer virtualenv is built) must produce its
JSON and markdown report. No timing is asserted: CI machines are shared and noisy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.paths import ROOT


def test_quick_bench_writes_json_and_report(tmp_path: Path) -> None:
    out = tmp_path / "results"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.run",
            "--quick",
            "--servers",
            "kninfer,bare",
            "--peer-python",
            "--no-plot",
            "--connections",
            "8",
            "--batches",
            "1,64",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads((out / "latest.json").read_text())
    assert set(results["servers"]) == {"kninfer", "bare"}
    for server in results["servers"].values():
        assert len(server["cold_start_s"]) == 1 and server["cold_start_s"][0] > 0
        assert server["peak_rss_mb"] > 0
        for key in ("b1_c8", "b64_c8"):
            point = server["load"][key]
            assert point["errors"] == 0
            assert point["rps"] > 0 and point["p99_ms"] >= point["p50_ms"] > 0
    breakdown = results["servers"]["kninfer"]["cold_start_breakdown"][0]
    assert {"imports_ms", "model_load_ms", "ready_ms"} <= set(breakdown)
    assert {row["id"] for row in results["summary"]} == {"cold_vs_floor", "b64_vs_in_process"}
    assert results["in_process"]["b64"]["median_us"] > 0
    report = (out / "report.md").read_text()
    assert "| cold start, kninfer / bare ASGI floor |" in report
    assert "| kninfer |" in report and "| bare ASGI + predict (floor) |" in report
    assert len(list(out.glob("run-*.json"))) == 1


def test_quick_cold_start_matrix_writes_json_and_report(tmp_path: Path) -> None:
    """`bench.cold --quick`: every family and format on small models, warm and cold page
    cache, kninfer next to its floor. The harness must run end to end; no timing is asserted."""
    out = tmp_path / "results"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.cold",
            "--quick",
            "--no-peers",
            "--no-plot",
            "--work",
            str(tmp_path / "models"),
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    doc = json.loads((out / "cold.json").read_text())
    families = {case["family"] for case in doc["cases"]}
    assert families == {"sklearn", "mlflow", "pytorch"}
    assert len(doc["cases"]) == 10
    for case in doc["cases"]:
        for cache in ("warm", "cold"):
            for kind in ("kninfer", "floor"):
                timing = case["results"][cache][kind]
                assert timing["total_s"] >= timing["ready_s"] > 0, (case["name"], cache, kind)
    report = (out / "cold.md").read_text()
    assert report.count("| warm |") == 10 and report.count("| cold |") == 10


def test_ab_of_a_tree_against_itself_writes_json_and_report(tmp_path: Path) -> None:
    """`bench.ab`, the side-by-side of two source trees, end to end on one round (this tree on
    both sides); no timing is asserted."""
    out = tmp_path / "results"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.ab",
            "--before",
            str(ROOT),
            "--rounds",
            "1",
            "--seconds",
            "1",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    doc = json.loads((out / "ab.json").read_text())
    before, after = doc["labels"]
    assert before.startswith("before ") and after.startswith("after ")
    for label in (before, after):
        assert doc["medians"][label]["cold_s"] > 0
        assert doc["medians"][label]["rps_b1"] > 0 and doc["medians"][label]["rps_b64"] > 0
    report = (out / "ab.md").read_text()
    assert "| cold start, spawn to first answer (s) |" in report
    assert "| throughput, batch 64 (req/s) |" in report


def test_the_targets_table_in_the_docs_is_what_bench_targets_writes(tmp_path: Path) -> None:
    """docs/performance.md includes bench/results/targets.md: regenerated from the run JSONs its
    command names, it is the same file (nothing pasted or edited by hand)."""
    committed = (ROOT / "bench" / "results" / "targets.md").read_text()
    command = committed.split("Command: `python -m bench.targets ", 1)[1].split("`", 1)[0]
    out = tmp_path / "targets.md"
    run = subprocess.run(
        [sys.executable, "-m", "bench.targets", *command.split(), "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert out.read_text() == committed
    assert (
        "| rps batch 1 x8, kninfer / KServe custom model | 2.38 | 2.78 | 2.54 | >= 2.0 |"
        in committed
    )


def test_the_batching_bench_runs_as_make_bench_runs_it(tmp_path: Path) -> None:
    """`python -m bench.batching.run`, as `make bench` starts it, on a small MLP for one short
    round: every request answered 200 in both modes (a wrong input name once turned the whole
    load into 400s that were reported as throughput). No timing is asserted."""
    out = tmp_path / "batching.json"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.batching.run",
            "--hidden",
            "64",
            "--duration",
            "1",
            "--warmup",
            "1",
            "--repeats",
            "1",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads(out.read_text())
    assert [(r["batching"], r["errors"], r["non_200"]) for r in report["runs"]] == [
        (False, 0, 0),
        (True, 0, 0),
    ]
    assert report["summary"]["errors"] == 0
    assert all(r["requests"] > 0 for r in report["runs"])


def test_the_dashboard_picture_is_the_checked_in_dashboard_over_the_recorded_run(
    tmp_path: Path,
) -> None:
    """docs/monitoring.md shows docs/img/dashboard.svg: drawn again from the run `python -m
    bench.dashboard` recorded (bench/results/dashboard.json) with today's checked-in dashboard,
    it is the same file, so a dashboard changed without a new picture (or a picture edited by
    hand) fails here. Every panel of the dashboard had its queries answered in that run."""
    recorded = json.loads((ROOT / "bench" / "results" / "dashboard.json").read_text())
    picture = tmp_path / "dashboard.svg"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.dashboard",
            "--redraw",
            str(ROOT / "bench" / "results" / "dashboard.json"),
            "--picture",
            str(picture),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert picture.read_text() == (ROOT / "docs" / "img" / "dashboard.svg").read_text()
    dashboard = json.loads(
        (ROOT / "kninfer" / "deploy" / "dashboards" / "kninfer.json").read_text()
    )
    panels = {p["title"] for p in dashboard["panels"] if p["type"] != "row"}
    assert set(recorded["series"]) == panels
    assert all(recorded["series"][title] for title in panels), "a panel had no series"
