"""Turning a bench run into the headline ratios (issue #8's targets) and a markdown report."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

# (id, description, numerator, denominator, comparison, bound). Figures: ("cold", server),
# ("rps"|"p99", server, point) or ("per_request_us", server, point) / ("in_process", batch).
TARGETS: list[tuple[str, str, tuple[Any, ...], tuple[Any, ...], str, float]] = [
    (
        "cold_vs_sklearnserver",
        "cold start, kninfer / KServe sklearnserver path",
        ("cold", "kninfer"),
        ("cold", "kserve-sklearnserver"),
        "<=",
        0.65,
    ),
    (
        "cold_vs_kserve",
        "cold start, kninfer / KServe custom model",
        ("cold", "kninfer"),
        ("cold", "kserve"),
        "<=",
        0.65,
    ),
    (
        "cold_vs_floor",
        "cold start, kninfer / bare ASGI floor",
        ("cold", "kninfer"),
        ("cold", "bare"),
        "<=",
        1.20,
    ),
    (
        "rps_vs_kserve",
        "rps batch 1 x8, kninfer / KServe custom model",
        ("rps", "kninfer", "b1_c8"),
        ("rps", "kserve", "b1_c8"),
        ">=",
        2.0,
    ),
    (
        "rps_vs_mlserver",
        "rps batch 1 x8, kninfer / MLServer (parallel_workers 0)",
        ("rps", "kninfer", "b1_c8"),
        ("rps", "mlserver-pw0", "b1_c8"),
        ">=",
        1.6,
    ),
    (
        "rps_vs_fastapi",
        "rps batch 1 x8, kninfer / FastAPI wrapper",
        ("rps", "kninfer", "b1_c8"),
        ("rps", "fastapi", "b1_c8"),
        ">=",
        1.0,
    ),
    (
        "p99_vs_kserve",
        "p99 batch 1 x32, kninfer / KServe custom model",
        ("p99", "kninfer", "b1_c32"),
        ("p99", "kserve", "b1_c32"),
        "<=",
        0.6,
    ),
    (
        "b64_vs_in_process",
        "batch 64: per-request server time x8 / in-process decode+predict",
        ("per_request_us", "kninfer", "b64_c8"),
        ("in_process", "b64"),
        "<=",
        2.0,
    ),
    (
        "batching",
        "PyTorch MLP rps x32, adaptive batching on / off",
        ("batching", "on"),
        ("batching", "off"),
        ">=",
        3.0,
    ),
]


def _figure(results: dict[str, Any], ref: tuple[Any, ...]) -> float | None:
    kind = ref[0]
    if kind == "batching":
        summary = (results.get("batching") or {}).get("summary") or {}
        value = summary.get(ref[1], {}).get("rps")
        return float(value) if value else None
    if kind == "in_process":
        entry = results.get("in_process", {}).get(ref[1])
        return float(entry["median_us"]) if entry else None
    server = results["servers"].get(ref[1])
    if server is None:
        return None
    if kind == "cold":
        cold = server.get("cold_start_s") or []
        return statistics.median(cold) if cold else None
    point = server["load"].get(ref[2])
    if point is None or not point.get("runs"):
        return None
    if kind == "rps":
        return float(statistics.median(r["rps"] for r in point["runs"]))
    if kind == "p99":
        return float(statistics.median(r["p99_us"] for r in point["runs"]) / 1000)
    if kind == "per_request_us":
        return 1e6 / float(statistics.median(r["rps"] for r in point["runs"]))
    raise ValueError(kind)


def summarize(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per target whose two figures were measured in this run."""
    rows: list[dict[str, Any]] = []
    for target_id, text, num, den, op, bound in TARGETS:
        a, b = _figure(results, num), _figure(results, den)
        if a is None or b is None or b == 0:
            continue
        ratio = a / b
        met = ratio <= bound if op == "<=" else ratio >= bound
        rows.append(
            {
                "id": target_id,
                "what": text,
                "ratio": round(ratio, 3),
                "target": f"{op} {bound}",
                "met": met,
                "numerator": round(a, 4),
                "denominator": round(b, 4),
            }
        )
    return rows


def write_markdown(results: dict[str, Any], path: Path, plot: str | None) -> None:
    meta = results["meta"]
    lines = [
        "# kninfer benchmark",
        "",
        f"Run {meta['started']} on {meta['cpu'] or 'unknown CPU'} ({meta['cores']} cores), "
        f"Python {meta['python']}; load average at start "
        f"{', '.join(f'{v:.2f}' for v in meta['loadavg_start'])}, at end "
        f"{', '.join(f'{v:.2f}' for v in meta['loadavg_end'])}. Server pinned to core 0, wrk "
        f"to core 1; {meta['runs']} x {meta['duration_s']:g} s runs per figure after "
        f"{meta['warmup_s']:g} s warm-up; cold start median of {meta['cold_runs']}.",
        "",
        f"Command: `{meta['command']}`",
        "",
        "## Targets (ratios measured in this run)",
        "",
        "| target | kninfer | peer | ratio | wanted | met |",
        "| --- | ---: | ---: | ---: | --- | --- |",
    ]
    for row in results.get("summary", []):
        lines.append(
            f"| {row['what']} | {row['numerator']:g} | {row['denominator']:g} | "
            f"{row['ratio']:.2f} | {row['target']} | {'yes' if row['met'] else 'NO'} |"
        )
    lines += ["", "## Figures", ""]
    points = sorted(
        {k for s in results["servers"].values() for k in s["load"]},
        key=lambda k: (int(k[1:].split("_c")[0]), int(k.split("_c")[1])),
    )
    header = (
        "| server | cold start s | peak RSS MiB | "
        + " | ".join(
            f"{p.replace('_c', ' x').replace('b', 'batch ')} rps / p50 / p99 ms" for p in points
        )
        + " |"
    )
    lines += [header, "| --- | ---: | ---: | " + " | ".join("---:" for _ in points) + " |"]
    for server in results["servers"].values():
        cells = []
        for p in points:
            point = server["load"].get(p)
            if point is None:
                cells.append("")
                continue
            flag = f" ({point['errors']} errors)" if point.get("errors") else ""
            cells.append(
                f"{point['rps']:.0f} / {point['p50_ms']:.2f} / {point['p99_ms']:.2f}{flag}"
            )
        cold = server.get("cold_start_median_s")
        rss = server["peak_rss_mb"] or ""  # cold-start-only peers have no load-phase RSS
        lines.append(
            f"| {server['label']} | {cold if cold is not None else ''} | "
            f"{rss} | " + " | ".join(cells) + " |"
        )
    in_process = results.get("in_process", {})
    if in_process:
        lines += [
            "",
            "In-process decode (kninfer.protocol) + `predict`, one core: "
            + ", ".join(f"batch {v['batch']}: {v['median_us']:.0f} us" for v in in_process.values())
            + ".",
        ]
    breakdowns = results["servers"].get("kninfer", {}).get("cold_start_breakdown")
    if breakdowns:
        keys = list(breakdowns[0])
        lines += [
            "",
            "kninfer cold-start breakdown (ms, from its `cold start` log line; median):",
            "",
            "| " + " | ".join(keys) + " |",
            "| " + " | ".join("---:" for _ in keys) + " |",
            "| "
            + " | ".join(
                f"{statistics.median(b[k] for b in breakdowns if b.get(k) is not None):.0f}"
                if any(b.get(k) is not None for b in breakdowns)
                else ""
                for k in keys
            )
            + " |",
        ]
    if plot:
        lines += ["", f"![throughput and p99 against connections]({plot})"]
    path.write_text("\n".join(lines) + "\n")
