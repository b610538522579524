"""Run a rendered manifest's container the way the kubelet would, with podman.

`pod_containers(doc)` reads the container specs out of an InferenceService (custom container or
ServingRuntime + model), a ServingRuntime or a Knative Service; `Container.start()` turns one into
`podman run`: image, command/args, env, securityContext, resource limits, the storage
initializer's read-only /mnt/models, and `probe()` polls its startup/readiness/liveness probes as
the spec states them (period, failure threshold, timeout).

What differs from a cluster, on purpose and said here once:
- Networking: every container shares the host's loopback (`--network host`), so each gets its own
  `PORT` (Knative sets it from containerPort) and `KNINFER_GRPC_PORT`; probes and traffic go to
  those ports on 127.0.0.1 (this machine forbids test traffic to other addresses).
- A transformer's `--predictor-host` (the predictor's Knative Service, port 80, which the
  activator and queue-proxy route to the container's 8080) becomes the predictor container's
  port on 127.0.0.1 (its gRPC port when the pods serve h2c).
- A remote `--storage-uri` (gs://, s3://) becomes a local copy mounted read-only at /mnt/models,
  as the storage initializer leaves it: this machine has no route to object storage.
- The pod runs as an arbitrary UID with GID 0 (OpenShift's restricted SCC), on a read-only root
  filesystem with a tmpfs /tmp: stricter than the manifests ask.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

PODMAN = ["podman", "--runtime", "runc"]
# This machine's container limits: crun refuses the hybrid cgroup layout, and raising NOFILE or
# NPROC above a sandbox's own limits is refused by the OCI runtime (runc's setrlimit fails).
LIMITS = ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=4096:4096"]
ARBITRARY_UID = "1000680000:0"
RELEASE_IMAGE = "ghcr.io/kninfer/kninfer:0.1.0"


def local_image(image: str) -> str:
    """The image `make image-test` built for a manifest's release image (same family)."""
    if image == RELEASE_IMAGE:
        return "localhost/kninfer:dev"
    if image.startswith(RELEASE_IMAGE + "-"):
        return "localhost/kninfer:dev-" + image.removeprefix(RELEASE_IMAGE + "-")
    return image


@dataclass
class ContainerSpec:
    name: str
    spec: dict[str, Any]
    role: str  # predictor | transformer
    grace_s: int = 30
    storage_uri: str | None = None


def pod_containers(doc: dict[str, Any], runtimes: dict[str, dict[str, Any]]) -> list[ContainerSpec]:
    """The containers one document would run (ServingRuntimes looked up in `runtimes`)."""
    kind = doc["kind"]
    name = doc["metadata"]["name"]
    found: list[ContainerSpec] = []
    if kind == "InferenceService":
        for role in ("predictor", "transformer"):
            component = doc["spec"].get(role)
            if component is None:
                continue
            grace = int(component.get("terminationGracePeriodSeconds", 30))
            if "model" in component:  # a ServingRuntime declares the container
                model = component["model"]
                runtime = runtimes[model["runtime"]]["spec"]["containers"][0]
                args = [a.replace("{{.Name}}", name) for a in runtime.get("args", [])]
                spec = {**runtime, "args": args + list(model.get("args", []))}
                found.append(ContainerSpec(name, spec, role, grace, model.get("storageUri")))
                continue
            for container in component["containers"]:
                env = {e["name"]: e.get("value") for e in container.get("env", [])}
                found.append(ContainerSpec(name, container, role, grace, env.get("STORAGE_URI")))
    elif kind == "Service" and doc["apiVersion"].startswith("serving.knative.dev"):
        template = doc["spec"]["template"]["spec"]
        grace = int(template.get("terminationGracePeriodSeconds", 30))
        for container in template["containers"]:
            role = "transformer" if "--transformer" in container.get("args", []) else "predictor"
            found.append(ContainerSpec(name, container, role, grace))
    return found


@dataclass
class Container:
    spec: ContainerSpec
    http_port: int
    grpc_port: int
    model_dir: Path | None = None
    predictor_port: int | None = None
    name: str = field(default_factory=lambda: f"kninfer-test-{uuid.uuid4().hex[:10]}")
    started_at: float = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def args(self) -> list[str]:
        args = list(self.spec.spec.get("args", []))
        out: list[str] = []
        i = 0
        while i < len(args):
            arg = args[i]
            if arg == "--storage-uri" and i + 1 < len(args):
                out += ["--model-dir", "/mnt/models"]  # remote download: see module docstring
                i += 2
                continue
            if arg == "--http-port" and i + 1 < len(args):
                out += [arg, str(self.http_port)]  # the pod's own port, moved with the rest
                i += 2
                continue
            if self.predictor_port is not None:
                if arg.startswith("--predictor_host="):
                    arg = f"--predictor_host=127.0.0.1:{self.predictor_port}"
                elif arg == "--predictor-host":
                    out += [arg, f"127.0.0.1:{self.predictor_port}"]
                    i += 2
                    continue
            out.append(arg)
            i += 1
        return out

    def run_command(self) -> list[str]:
        spec = self.spec.spec
        command = [
            *PODMAN,
            "run",
            "-d",
            "--name",
            self.name,
            *LIMITS,
            "--network",
            "host",
            "--user",
            ARBITRARY_UID,
            "--read-only",
            "--tmpfs",
            "/tmp",
        ]
        security = spec.get("securityContext", {})
        for cap in security.get("capabilities", {}).get("drop", []):
            command += ["--cap-drop", cap]
        if security.get("allowPrivilegeEscalation") is False:
            command += ["--security-opt", "no-new-privileges"]
        limits = spec.get("resources", {}).get("limits", {})
        if "memory" in limits:
            command += ["--memory", _bytes(limits["memory"])]
        if "cpu" in limits:
            command += ["--cpus", _cpus(limits["cpu"])]
        env = {e["name"]: e.get("value", "") for e in spec.get("env", [])}
        # Knative sets PORT to the container port: the h2c one for a gRPC pod.
        env.update(
            PORT=str(self.grpc_port if self.serves_grpc else self.http_port),
            KNINFER_GRPC_PORT=str(self.grpc_port),
        )
        for key, value in sorted(env.items()):
            command += ["-e", f"{key}={value}"]
        if self.model_dir is not None:
            command += ["-v", f"{self.model_dir}:/mnt/models:ro"]
        if "command" in spec:
            command += ["--entrypoint", spec["command"][0]]
        image = local_image(spec["image"])
        rest = list(spec["command"][1:]) if "command" in spec else []
        return [*command, image, *rest, *self.args()]

    def start(self) -> Container:
        self.started_at = time.perf_counter()
        done = subprocess.run(
            self.run_command(), capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"podman run failed: {done.stderr}")
        return self

    @property
    def serves_grpc(self) -> bool:
        """The container's one port is h2c (serving_protocol: grpc)."""
        return any(p.get("name") == "h2c" for p in self.spec.spec.get("ports", []))

    def _attempt(self, probe: dict[str, Any], timeout: float) -> bool:
        if "tcpSocket" in probe:
            assert probe["tcpSocket"]["port"] == 8081 and self.serves_grpc, probe
            try:
                with socket.create_connection(("127.0.0.1", self.grpc_port), timeout):
                    return True
            except OSError:
                return False
        http = probe["httpGet"]
        assert http.get("port", 8080) in (8080, "http1"), f"probe port {http} is not served"
        try:
            return httpx.get(f"{self.url}{http['path']}", timeout=timeout).status_code < 400
        except httpx.HTTPError:
            return False

    def probe(self, kind: str, ready_within_s: float = 120.0) -> float:
        """Poll the `kind` probe until it succeeds once; seconds taken.

        As the kubelet counts: one attempt per periodSeconds, each with timeoutSeconds, after
        initialDelaySeconds; failureThreshold failed attempts in a row make a startup or
        liveness probe restart the container, which fails here. A failing readiness probe
        only keeps the pod out of the endpoints, so it gets `ready_within_s`. Attempts are made
        more often than the period (the cold-start figure wants the first success), but
        failures are counted per period, so pass or fail is what the kubelet would decide.
        """
        probe = self.spec.spec[kind]
        period = float(probe.get("periodSeconds", 10))
        timeout = float(probe.get("timeoutSeconds", 1))
        threshold = int(probe.get("failureThreshold", 3))
        time.sleep(float(probe.get("initialDelaySeconds", 0)))
        budget = ready_within_s if kind == "readinessProbe" else period * threshold
        started = time.perf_counter()
        while True:
            if self._attempt(probe, timeout):
                return time.perf_counter() - started
            if time.perf_counter() - started > budget:
                raise AssertionError(
                    f"{kind} still failing after {budget:g}s (period "
                    f"{period:g}s x {threshold}):\n{self.logs()}"
                )
            time.sleep(0.05)

    def logs(self) -> str:
        done = subprocess.run(
            [*PODMAN, "logs", self.name], capture_output=True, text=True, timeout=30, check=False
        )
        return (done.stdout + done.stderr)[-4000:]

    def stop(self) -> int:
        """SIGTERM, then SIGKILL after the grace period (as the kubelet); the exit code."""
        subprocess.run(
            [*PODMAN, "stop", "-t", str(self.spec.grace_s), self.name],
            capture_output=True,
            timeout=self.spec.grace_s + 30,
            check=False,
        )
        done = subprocess.run(
            [*PODMAN, "inspect", self.name, "--format", "{{.State.ExitCode}}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        return int(done.stdout.strip() or -1)

    def remove(self) -> None:
        subprocess.run(
            [*PODMAN, "rm", "-f", self.name], capture_output=True, timeout=60, check=False
        )


@contextlib.contextmanager
def running(container: Container) -> Iterator[Container]:
    container.start()
    try:
        yield container
    finally:
        container.remove()


def _bytes(quantity: str) -> str:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "K": 10**3, "M": 10**6, "G": 10**9}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return str(int(float(quantity[: -len(suffix)]) * factor))
    return quantity


def _cpus(quantity: str) -> str:
    return str(float(quantity[:-1]) / 1000) if quantity.endswith("m") else str(float(quantity))


def image_size(image: str) -> int:
    done = subprocess.run(
        [*PODMAN[:1], "image", "inspect", image, "--format", "{{.Size}}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return int(json.loads(done.stdout.strip()))


def python_in_image(image: str, script: str) -> subprocess.CompletedProcess[str]:
    """`python -c SCRIPT` inside `image`, as a pod runs it (an arbitrary UID, a read-only root,
    the pod limits) and with no network; its output and status (not checked)."""
    return subprocess.run(
        [
            *PODMAN,
            "run",
            "--rm",
            "--network",
            "none",
            *LIMITS,
            "--user",
            ARBITRARY_UID,
            "--read-only",
            "--entrypoint",
            "python",
            image,
            "-c",
            script,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
