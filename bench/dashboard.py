"""The monitoring walk-through run for real: the churn model of docs/monitoring.md, profiled and
served, scraped by a real Prometheus that evaluates the rendered PrometheusRule, fed clean and
then drifted traffic; the checked-in Grafana dashboard's panels drawn from that Prometheus, and
the alerts that fired.

    .venv/bin/python -m bench.dashboard [--prometheus PATH] [--clean 60] [--drifted 420]

Needs Prometheus's `prometheus` and `promtool` (Debian's `prometheus` package, or a release from
prometheus.io) on PATH or at --prometheus; nothing else outside the dev environment. No Grafana
runs here: the picture is drawn by this script from the dashboard JSON
(kninfer/deploy/dashboards/kninfer.json: each panel's place, title, queries and legends), every
query answered by Prometheus's `query_range` with the dashboard's variables set to "All". It is
the dashboard's data, not a Grafana screenshot.

What it does, in a temporary directory:
1. runs docs/monitoring.md's `churn_train.py` and `kninfer profile churn --data train.csv`;
2. renders docs/monitoring.md's `monitoring` config (alert delays cut to 1m so the run is short)
   and checks the PrometheusRule's groups with `promtool check rules`;
3. serves the model (as Knative revision churn-predictor-00001), and Prometheus scrapes it every
   2 s with the labels the rendered PodMonitor adds, and evaluates the rules every 2 s;
4. sends `--clean` seconds of requests drawn like the training data, then `--drifted` seconds of
   docs/monitoring.md's drifted traffic (monthly charges 30 % higher, a `student` plan never seen
   in training); one request in 50 is malformed (a 400), so the error panel is not empty;
5. reads every panel's queries over the run and the alerts' states, draws docs/img/dashboard.svg
   and writes bench/results/dashboard.{json,md} (the series drawn are in dashboard.json, so
   `--redraw` draws the picture again from them, without Prometheus; tests/test_bench.py checks
   the committed picture is what they and the checked-in dashboard give).
"""

from __future__ import annotations

import argparse
import html
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from bench.harness import free_port, git_commit, stop, wait_ready

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "kninfer" / "deploy" / "dashboards" / "kninfer.json"
RESULTS = ROOT / "bench" / "results"
PICTURE = ROOT / "docs" / "img" / "dashboard.svg"
SCRAPE_S = 2
# Grafana's $__rate_interval: max($__interval + scrape interval, 4 x scrape interval); for a
# few minutes drawn over ~600 px, $__interval is under the scrape interval, so 4 x 2 s.
RATE_INTERVAL = f"{4 * SCRAPE_S}s"
REVISION = "churn-predictor-00001"
LABELS = {
    "namespace": "models",
    "kninfer_config": "churn",
    "revision": REVISION,
    "service": "churn-predictor",
    "pod": f"{REVISION}-deployment-0",
}


# ---- the walk-through's files ----------------------------------------------------------------


def doc_block(name: str) -> str:
    from tests.test_docs import blocks

    return blocks()[name]


def run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout + done.stderr


def prepare(work: Path, promtool: str) -> tuple[Path, str]:
    """The model, its profile and the rendered rules file; promtool's verdict on the rules."""
    import yaml

    (work / "churn_train.py").write_text(doc_block("churn_train.py"))
    run([sys.executable, "churn_train.py"], work)
    run([sys.executable, "-m", "kninfer", "profile", "churn", "--data", "train.csv"], work)
    config = yaml.safe_load(doc_block("monitoring.yaml"))
    config["monitoring"].update(drift_for="1m", errors_for="1m")
    (work / "churn.yaml").write_text(yaml.safe_dump(config))
    run([sys.executable, "-m", "kninfer", "render", "churn.yaml", "-o", "out"], work)
    docs = list(yaml.safe_load_all((work / "out" / "monitoring" / "churn.yaml").read_text()))
    rule = next(d for d in docs if d["kind"] == "PrometheusRule")
    rules = work / "rules.yml"
    rules.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    checked = run([promtool, "check", "rules", str(rules)], work).strip().splitlines()[-1]
    return rules, checked.strip()


def start_prometheus(
    binary: str, work: Path, rules: Path, target_port: int, port: int
) -> subprocess.Popen[bytes]:
    import yaml

    config = {
        "global": {"scrape_interval": f"{SCRAPE_S}s", "evaluation_interval": f"{SCRAPE_S}s"},
        "rule_files": [str(rules)],
        # What the rendered PodMonitor gives each series: the pod's namespace and name, and the
        # revision, service and kninfer_config relabelled from its labels.
        "scrape_configs": [
            {
                "job_name": "kninfer",
                "static_configs": [{"targets": [f"127.0.0.1:{target_port}"], "labels": LABELS}],
            }
        ],
    }
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = open(work / "prometheus.log", "wb")  # noqa: SIM115 - owned by the child
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        cwd=work,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    wait_ready(
        f"http://127.0.0.1:{port}", process, 60, path="/-/ready", log=work / "prometheus.log"
    )
    return process


def start_server(work: Path) -> tuple[subprocess.Popen[bytes], int]:
    port, grpc_port = free_port(), free_port()
    env = {
        **os.environ,
        "K_REVISION": REVISION,
        "K_SERVICE": "churn-predictor",
        "PYTHONUNBUFFERED": "1",
    }
    log = open(work / "server.log", "wb")  # noqa: SIM115 - owned by the child
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kninfer",
            "serve",
            "--predictor",
            "sklearn",
            "--model-dir",
            "churn",
            "--model-name",
            "churn",
            "--host",
            "127.0.0.1",
            "--http-port",
            str(port),
            "--grpc-port",
            str(grpc_port),
        ],
        cwd=work,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    try:
        wait_ready(
            f"http://127.0.0.1:{port}",
            process,
            120,
            path="/v2/models/churn/ready",
            log=work / "server.log",
        )
    except BaseException:
        stop(process, group=True)
        raise
    return process, port


# ---- traffic ---------------------------------------------------------------------------------


def send(port: int, seconds: float, drifted: bool, seed: int) -> dict[str, int]:
    """Requests of 20 rows, about 20 a second, for `seconds`: drawn like churn_train.py's data,
    or like docs/monitoring.md's drifted.py; one in 50 malformed."""
    import httpx
    import numpy as np

    rng = np.random.default_rng(seed)
    counts = {"sent": 0, "ok": 0, "refused": 0}
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        while time.monotonic() < deadline:
            n = 20
            tenure = rng.integers(1, 73, n)
            monthly = rng.gamma(4.0, 15.0, n) * (1.3 if drifted else 1.0)
            plans, shares = (
                (["basic", "plus", "pro", "student"], [0.45, 0.3, 0.2, 0.05])
                if drifted
                else (["basic", "plus", "pro"], [0.5, 0.3, 0.2])
            )
            inputs = [
                {"name": "tenure", "shape": [n], "datatype": "FP64", "data": tenure.tolist()},
                {
                    "name": "monthly",
                    "shape": [n],
                    "datatype": "FP64",
                    "data": monthly.round(2).tolist(),
                },
                {
                    "name": "plan",
                    "shape": [n],
                    "datatype": "BYTES",
                    "data": rng.choice(plans, n, p=shares).tolist(),
                },
            ]
            if counts["sent"] % 50 == 49:
                inputs = inputs[:2]  # no `plan`: the server answers 400
            answer = client.post("/v2/models/churn/infer", json={"inputs": inputs})
            counts["sent"] += 1
            counts["ok" if answer.status_code == 200 else "refused"] += 1
            time.sleep(0.04)
    return counts


# ---- Prometheus ------------------------------------------------------------------------------


def api(port: int, path: str, **params: Any) -> Any:
    query = urllib.parse.urlencode(params)
    with urllib.request.urlopen(
        f"http://127.0.0.1:{port}/api/v1/{path}?{query}", timeout=30
    ) as reply:
        body = json.loads(reply.read())
    if body.get("status") != "success":
        raise RuntimeError(f"Prometheus {path}: {body}")
    return body["data"]


def grafana_expr(expr: str) -> str:
    """The panel query as Grafana sends it with every variable at "All" (`.*`)."""
    expr = expr.replace("$__rate_interval", RATE_INTERVAL)
    return re.sub(r'=~"\$\w+"', '=~".*"', expr)


def legend(template: str, metric: dict[str, str]) -> str:
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: metric.get(m[1], ""), template).strip()


def panel_series(
    port: int, panel: dict[str, Any], start: float, end: float
) -> list[dict[str, Any]]:
    series = []
    for target in panel.get("targets", []):
        data = api(
            port,
            "query_range",
            query=grafana_expr(target["expr"]),
            start=start,
            end=end,
            step=SCRAPE_S,
        )
        for result in data["result"]:
            points = [
                (float(t), float(f"{float(v):.6g}"))
                for t, v in result["values"]
                if math.isfinite(float(v))
            ]
            series.append(
                {
                    "legend": legend(target.get("legendFormat", ""), result["metric"]),
                    "points": points,
                }
            )
    return series


def alert_states(port: int) -> list[dict[str, Any]]:
    alerts = []
    for group in api(port, "rules")["groups"]:
        for rule in group["rules"]:
            if rule["type"] != "alerting":
                continue
            alerts.append(
                {
                    "alert": rule["name"],
                    "state": rule["state"],
                    "firing": [
                        {"labels": a["labels"], "activeAt": a["activeAt"], "state": a["state"]}
                        for a in rule.get("alerts", [])
                    ],
                }
            )
    return alerts


# ---- the picture -----------------------------------------------------------------------------

COLORS = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
]
UNIT_W, UNIT_H = 50, 34  # a grid column and a grid row, in pixels (24 columns wide)


def draw(
    dashboard: dict[str, Any],
    drawn: dict[str, list[dict[str, Any]]],
    start: float,
    end: float,
    drift_at: float,
) -> str:
    bottom = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in dashboard["panels"])
    width, height = 24 * UNIT_W, bottom * UNIT_H + 40
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="#111217"/>',
        f'<text x="8" y="22" fill="#d8d9da" font-size="15">{html.escape(dashboard["title"])}'
        " (variables: All)</text>",
    ]
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        x, y = grid["x"] * UNIT_W, grid["y"] * UNIT_H + 34
        w, h = grid["w"] * UNIT_W - 6, grid["h"] * UNIT_H - 6
        title = html.escape(panel["title"])
        if panel["type"] == "row":
            out.append(
                f'<text x="{x + 6}" y="{y + 20}" fill="#d8d9da" font-size="13" '
                f'font-weight="bold">{title}</text>'
            )
            continue
        out.append(
            f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="3" fill="#181b1f" '
            'stroke="#2a2d33"/>'
        )
        out.append(f'<text x="{x + 8}" y="{y + 16}" fill="#d8d9da">{title}</text>')
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
        series = drawn.get(panel["title"], [])
        out.extend(
            _plot(
                series,
                (x + 50, y + 26, w - 58, h - 26 - 18 - 14 * min(4, len(series))),
                (start, end, drift_at),
                unit,
            )
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _plot(
    series: list[dict[str, Any]],
    box: tuple[float, float, float, float],
    times: tuple[float, float, float],
    unit: str | None,
) -> list[str]:
    """One time series panel's axes, lines and legend (its first four series) in `box`."""
    (x, y, w, h), (start, end, drift_at) = box, times
    out = []
    values = [v for s in series for _, v in s["points"]]
    if not values:
        out.append(
            f'<text x="{x + w / 2}" y="{y + h / 2}" fill="#8e8e8e" '
            'text-anchor="middle">No data</text>'
        )
        return out
    low, high = min(0.0, min(values)), max(values)
    high = high if high > low else low + 1

    def px(t: float) -> float:
        return x + (t - start) / (end - start) * w

    def py(v: float) -> float:
        return y + h - (v - low) / (high - low) * h

    for fraction in (0, 0.5, 1):
        value = low + fraction * (high - low)
        out.append(
            f'<line x1="{x}" y1="{py(value):.1f}" x2="{x + w}" y2="{py(value):.1f}" '
            'stroke="#2a2d33"/>'
        )
        out.append(
            f'<text x="{x - 4}" y="{py(value) + 4:.1f}" fill="#8e8e8e" '
            f'text-anchor="end">{_tick(value, unit)}</text>'
        )
    out.append(
        f'<line x1="{px(drift_at):.1f}" y1="{y}" x2="{px(drift_at):.1f}" y2="{y + h}" '
        'stroke="#8e8e8e" stroke-dasharray="4 3"/>'
    )
    out.append(
        f'<text x="{px(drift_at) + 3:.1f}" y="{y + 10}" fill="#8e8e8e">drifted '
        "traffic from here</text>"
    )
    for seconds in range(0, int(end - start) + 1, 60):
        out.append(
            f'<text x="{px(start + seconds):.1f}" y="{y + h + 12}" fill="#8e8e8e" '
            f'text-anchor="middle">{seconds // 60}m</text>'
        )
    for index, s in enumerate(series):
        color = COLORS[index % len(COLORS)]
        path = " ".join(f"{px(t):.1f},{py(v):.1f}" for t, v in s["points"])
        out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="1.5"/>')
        if index < 4:
            ly = y + h + 26 + 14 * index
            out.append(f'<rect x="{x}" y="{ly - 8}" width="10" height="3" fill="{color}"/>')
            out.append(
                f'<text x="{x + 14}" y="{ly - 4}" fill="#c7d0d9">{html.escape(s["legend"])}</text>'
            )
        elif index == 4:
            out.append(
                f'<text x="{x + w}" y="{y + h + 22}" fill="#8e8e8e" text-anchor="end">'
                f"+{len(series) - 4} more series</text>"
            )
    return out


def _tick(value: float, unit: str | None) -> str:
    """A tick label in the panel's Grafana unit (s, percentunit, reqps, or a plain number)."""
    if unit == "s":
        return f"{value * 1000:.3g} ms" if value else "0"
    if unit == "percentunit":
        return f"{value * 100:.2g}%" if value else "0%"
    text = "0" if value == 0 else f"{value:.0f}" if abs(value) >= 100 else f"{value:.2g}"
    return f"{text} req/s" if unit == "reqps" else text


# ---- the report ------------------------------------------------------------------------------


def write_markdown(doc: dict[str, Any], path: Path) -> None:
    lines = [
        "# The dashboard and the alerts, from a real Prometheus",
        "",
        f"Command: `{doc['command']}` at {doc['commit']}, with {doc['prometheus']}. The churn "
        f"model of docs/monitoring.md, profiled and served; {doc['clean_s']:g} s of traffic "
        f"drawn like its training data ({doc['traffic']['clean']['sent']} requests of 20 rows), "
        f"then {doc['drifted_s']:g} s of the page's drifted traffic "
        f"({doc['traffic']['drifted']['sent']} requests); one request in 50 malformed (400). "
        "Prometheus scraped the server every 2 s and evaluated the rendered PrometheusRule "
        "(alert delays cut to 1m) every 2 s. Picture: docs/img/dashboard.svg.",
        "",
        f"`promtool check rules` on the rendered rule: `{doc['promtool']}`",
        "",
        "| alert | state at the end | labels | pending from (s after the drifted traffic began) |",
        "| --- | --- | --- | ---: |",
    ]
    for alert in doc["alerts"]:
        firing = alert["firing"]
        if not firing:
            lines.append(f"| {alert['alert']} | {alert['state']} | | |")
        for a in firing:
            what = ", ".join(
                f"{k}={v}"
                for k, v in sorted(a["labels"].items())
                if k in ("feature", "model", "version")
            )
            lines.append(
                f"| {alert['alert']} | {a['state']} | {what} | {a['after_drift_s']:.0f} s |"
            )
    lines += [
        "",
        "PSI per feature at the end (`kninfer:drift_psi_1h`, from the bin counters, "
        "over the whole run):",
        "",
        "| feature | PSI |",
        "| --- | ---: |",
    ]
    for feature, value in sorted(doc["psi_1h"].items()):
        lines.append(f"| {feature} | {value:.3f} |")
    path.write_text("\n".join(lines) + "\n")


def redraw(run_doc: dict[str, Any]) -> str:
    """The picture of a run (its dashboard.json) with the checked-in dashboard's layout."""
    times = run_doc["times"]
    return draw(
        json.loads(DASHBOARD.read_text()),
        run_doc["series"],
        times["start"],
        times["end"],
        times["drift_at"],
    )


def _since(stamp: str, drift_at: float) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() - drift_at


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prometheus", default=shutil.which("prometheus") or "prometheus")
    parser.add_argument("--clean", type=float, default=60.0, help="seconds of clean traffic")
    # The drift alert averages the PSI over 5 minutes (kninfer.deploy.monitoring), then waits
    # its 1m `for`: 7 minutes of drifted traffic see it fire.
    parser.add_argument("--drifted", type=float, default=420.0, help="seconds of drifted traffic")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--picture", type=Path, default=PICTURE)
    parser.add_argument(
        "--redraw",
        type=Path,
        default=None,
        metavar="DASHBOARD_JSON",
        help="draw the picture from a run's dashboard.json, and nothing else",
    )
    args = parser.parse_args(argv)
    if args.redraw is not None:
        args.picture.write_text(redraw(json.loads(args.redraw.read_text())))
        return 0
    binary = shutil.which(args.prometheus) or args.prometheus
    promtool = str(Path(binary).with_name("promtool"))
    if not Path(binary).exists() or not Path(promtool).exists():
        parser.error(f"needs Prometheus's prometheus and promtool (not found at {binary})")
    version = run([binary, "--version"], ROOT).splitlines()[0]
    work = Path(tempfile.mkdtemp(prefix="kninfer-dashboard-"))
    rules, checked = prepare(work, promtool)
    server, port = start_server(work)
    prom_port = free_port()
    try:
        prometheus = start_prometheus(binary, work, rules, port, prom_port)
    except BaseException:
        stop(server, group=True)
        raise
    try:
        start = time.time()
        clean = send(port, args.clean, drifted=False, seed=1)
        drift_at = time.time()
        drifted = send(port, args.drifted, drifted=True, seed=2)
        end = time.time()
        time.sleep(3 * SCRAPE_S)  # the last scrapes and rule evaluations
        dashboard = json.loads(DASHBOARD.read_text())
        drawn = {
            p["title"]: panel_series(prom_port, p, start, end)
            for p in dashboard["panels"]
            if p["type"] != "row"
        }
        alerts = alert_states(prom_port)
        for alert in alerts:
            for firing in alert["firing"]:
                firing["after_drift_s"] = round(_since(firing["activeAt"], drift_at), 1)
        psi = {
            r["metric"]["feature"]: float(r["value"][1])
            for r in api(prom_port, "query", query="kninfer:drift_psi_1h")["result"]
        }
    finally:
        stop(prometheus, group=True)
        stop(server, group=True)
    doc = {
        "command": "python -m bench.dashboard "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "commit": git_commit(ROOT, "kninfer"),
        "prometheus": version,
        "promtool": checked,
        "clean_s": args.clean,
        "drifted_s": args.drifted,
        "traffic": {"clean": clean, "drifted": drifted},
        "alerts": alerts,
        "psi_1h": psi,
        "times": {"start": start, "end": end, "drift_at": drift_at},
        "series": drawn,
    }
    args.picture.parent.mkdir(parents=True, exist_ok=True)
    args.picture.write_text(redraw(doc))
    args.out.mkdir(parents=True, exist_ok=True)
    # One line: the series are thousands of points; dashboard.md is the file to read.
    (args.out / "dashboard.json").write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    write_markdown(doc, args.out / "dashboard.md")
    print((args.out / "dashboard.md").read_text())
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
