"""What OpenTelemetry tracing costs a served model: the same server with tracing off and on
(kninfer.observability.otel, docs/observability.md "Traces"), in alternating turns on one
machine.

The model is the embedded iris model (a LogisticRegression on one [N, 4] `input-0`): its
prediction is cheap, so the spans' share of a request is as large as it gets. Tracing off is
`--no-otel`; tracing on exports every request's spans (the SDK's default sampler: every root
span), and sampled tracing one request in ten (the SDK's `parentbased_traceidratio`), over
OTLP/HTTP to a receiver this bench starts, which decodes each export, counts its
spans and drops them (on wrk's core, so it does not take the server's). Each round starts each
server in turn (A, B, then B, A, ...) and measures throughput and latency under wrk (V2 JSON,
batch 1 and 64, 8 connections, server on core 0, wrk on core 1), as bench/ab.py does; read the
ratios, not the absolute figures. After each traced run the receiver's count is compared with
the requests answered: the batch span processor drops spans when its queue is full
(OTEL_BSP_MAX_QUEUE_SIZE), and the report says how many were exported.

    .venv/bin/python -m bench.tracing [--rounds 3] [--seconds 5] [--out bench/results]

Writes tracing.json and tracing.md under --out.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench import load
from bench.harness import LOADGEN_CPU, free_port, git_commit, medians, pinned, write_report
from bench.servers import BENCH, ROOT, ServerSpec

RESULTS = BENCH / "results"
BATCHES = (1, 64)
LABELS = ("tracing off", "tracing on", "tracing on, 10% sampled")
SAMPLED = {"tracing on": 1.0, "tracing on, 10% sampled": 0.1}  # the share of traces recorded


# ---- the receiver (its own process: `python -m bench.tracing --receiver PORT`) ----------------


def serve_receiver(port: int) -> None:
    """An OTLP/HTTP receiver that counts spans and server spans and drops them; `GET /count`
    answers the counts as JSON."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
        ExportTraceServiceResponse,
    )

    counts = {"exports": 0, "spans": 0, "server_spans": 0}
    answer = ExportTraceServiceResponse().SerializeToString()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a collector answers

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            counts["exports"] += 1
            for resource_spans in request.resource_spans:
                for scope_spans in resource_spans.scope_spans:
                    counts["spans"] += len(scope_spans.spans)
                    counts["server_spans"] += sum(1 for s in scope_spans.spans if s.kind == 2)
            self._reply("application/x-protobuf", answer)

        def do_GET(self) -> None:  # noqa: N802
            self._reply("application/json", json.dumps(counts).encode())

        def _reply(self, content_type: str, body: bytes) -> None:
            self.send_response(200)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def start_receiver(port: int, work: Path) -> subprocess.Popen[bytes]:
    log = open(work / "receiver.log", "wb")  # noqa: SIM115 - owned by the child
    process = subprocess.Popen(
        pinned(LOADGEN_CPU, [sys.executable, "-m", "bench.tracing", "--receiver", str(port)]),
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            receiver_counts(port)
            return process
        except OSError:
            if process.poll() is not None:
                raise RuntimeError((work / "receiver.log").read_text()) from None
            time.sleep(0.05)
    raise TimeoutError("the OTLP receiver did not start")


def receiver_counts(port: int) -> dict[str, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/count", timeout=5) as reply:
        counts: dict[str, int] = json.loads(reply.read())
    return counts


# ---- the servers ------------------------------------------------------------------------------


def spec_for(label: str, receiver_port: int, work: Path) -> ServerSpec:
    python = ROOT / ".venv" / "bin" / "python"
    if not python.exists():
        python = Path(sys.executable)
    env = {"PYTHONUNBUFFERED": "1", "XDG_CACHE_HOME": str(work / "cache")}
    if label in SAMPLED:
        env.update(
            OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{receiver_port}",
            OTEL_SERVICE_NAME="bench-tracing",
        )
        if SAMPLED[label] < 1:  # the SDK's standard ratio sampler, as production would set it
            env.update(
                OTEL_TRACES_SAMPLER="parentbased_traceidratio",
                OTEL_TRACES_SAMPLER_ARG=str(SAMPLED[label]),
            )
    else:  # whatever OTEL_* the bench's own environment holds
        env["KNINFER_OTEL"] = "0"
    return ServerSpec(
        label,
        label,
        lambda h, g, m: [
            str(python),
            "-m",
            "kninfer",
            "serve",
            "--host",
            "127.0.0.1",
            "--http-port",
            str(h),
            "--grpc-port",
            str(g),
        ],
        env=env,
        cwd=ROOT,
    )


def throughput(
    spec: ServerSpec,
    bodies: dict[int, Path],
    seconds: float,
    warm_s: float,
    work: Path,
    wrk_path: str,
) -> tuple[dict[int, dict[str, Any]], float]:
    """wrk per batch size (after `warm_s` of warm-up, if any); and the requests wrk saw
    answered (plus wait_first_inference's one)."""
    run = load.start(spec, work)
    try:
        load.wait_first_inference(run, bodies[1].read_bytes(), 120)
        results, every = load.wrk_batches(run, wrk_path, bodies, seconds, warm_s)
        answered = 1.0 + sum(r["requests"] - r["non_2xx"] for runs in every.values() for r in runs)
        return results, answered
    finally:
        load.stop(run)  # SIGTERM: the drain flushes the spans still buffered


def write_markdown(doc: dict[str, Any], path: Path) -> None:
    off, *on = LABELS
    medians = doc["medians"]
    lines = [
        "# Tracing's cost: the iris model with OpenTelemetry tracing off and on",
        "",
        f"Command: `{doc['command']}` at {doc['commit']}; {doc['rounds']} rounds in "
        f"alternating turns, medians; wrk for {doc['seconds']:g} s per point, 8 connections, "
        f"server pinned to one core and wrk (and the OTLP receiver) to the other; "
        f"{doc['machine']}. Each ratio is on / off: above 1 is faster for throughput, slower "
        "for latency. Sampled: OTEL_TRACES_SAMPLER=parentbased_traceidratio, "
        "OTEL_TRACES_SAMPLER_ARG=0.1 (requests without a caller's traceparent, as here).",
        "",
        f"| metric | {off} | " + " | ".join(f"{label} | ratio" for label in on) + " |",
        "| --- | ---: |" + " ---: | ---: |" * len(on),
    ]
    for batch in BATCHES:
        for title, key in (
            (f"throughput, batch {batch} (req/s)", f"rps_b{batch}"),
            (f"p50 latency, batch {batch} (ms)", f"p50_ms_b{batch}"),
            (f"p99 latency, batch {batch} (ms)", f"p99_ms_b{batch}"),
        ):
            a = medians[off][key]
            cells = []
            for label in on:
                b = medians[label][key]
                cells.append(f"{b:g} | {b / a:.3f}" if a else f"{b:g} | n/a")
            lines.append(f"| {title} | {a:g} | " + " | ".join(cells) + " |")
    lines.append("")
    for label in on:
        lines.append(
            f"Request spans exported per request answered, {label} (expected "
            f"{SAMPLED[label]:g}): "
            + ", ".join(
                f"{c['exported_share']:.3f}" for c in doc["export_checks"] if c["label"] == label
            )
            + "."
        )
    lines.append("")
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0, help="wrk seconds per point")
    parser.add_argument(
        "--warm", type=float, default=1.0, help="wrk seconds of warm-up before each point (0: none)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--receiver", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.receiver is not None:
        serve_receiver(args.receiver)
        return 0
    wrk_path = load.ensure_wrk()
    work = Path(tempfile.mkdtemp(prefix="kninfer-tracing-"))
    bodies = {}
    for batch in BATCHES:
        bodies[batch] = work / f"body-{batch}.json"
        bodies[batch].write_bytes(_body(batch))
    receiver_port = free_port()
    receiver = start_receiver(receiver_port, work)
    samples: dict[str, dict[str, list[float]]] = {label: {} for label in LABELS}
    checks: list[dict[str, Any]] = []
    try:
        for index in range(args.rounds):
            order = list(LABELS) if index % 2 == 0 else list(reversed(LABELS))
            for label in order:
                before = receiver_counts(receiver_port)["server_spans"]
                spec = spec_for(label, receiver_port, work)
                results, answered = throughput(
                    spec, bodies, args.seconds, args.warm, work, wrk_path
                )
                exported = receiver_counts(receiver_port)["server_spans"] - before
                got = samples[label]
                for batch, result in results.items():
                    got.setdefault(f"rps_b{batch}", []).append(result["rps"])
                    got.setdefault(f"p50_ms_b{batch}", []).append(result["p50_us"] / 1000)
                    got.setdefault(f"p99_ms_b{batch}", []).append(result["p99_us"] / 1000)
                if label in SAMPLED:
                    checks.append(
                        {
                            "round": index + 1,
                            "label": label,
                            "answered": answered,
                            "request_spans": exported,
                            "exported_share": round(exported / answered, 4),
                        }
                    )
                elif exported:
                    raise RuntimeError(f"tracing off exported {exported} request spans")
                print(
                    f"[tracing {time.strftime('%H:%M:%S')}] round {index + 1} {label}: "
                    + ", ".join(f"b{b} {got[f'rps_b{b}'][-1]:.0f} rps" for b in BATCHES)
                    + f"; request spans exported: {exported} of {answered:.0f} answered",
                    flush=True,
                )
    finally:
        receiver.terminate()
        receiver.wait(10)
    doc = {
        "command": "python -m bench.tracing "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "commit": git_commit(ROOT, "kninfer"),
        "labels": list(LABELS),
        "rounds": args.rounds,
        "seconds": args.seconds,
        "machine": f"{os.cpu_count()} CPUs",
        "samples": samples,
        "medians": medians(samples),
        "export_checks": checks,
    }
    write_report(args.out, "tracing", doc, write_markdown)
    return 0


def _body(batch: int) -> bytes:
    from bench.run import request_body

    return request_body(batch)


if __name__ == "__main__":
    sys.exit(main())
