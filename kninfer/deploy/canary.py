"""`kninfer canary start|promote|rollback|status`: KServe canary rollouts (Knative mode).

The patches are the ones KServe documents (kserve website, rollout-strategies/canary.md):
- start: point the predictor at the new model and set `canaryTrafficPercent: P`; KServe sends P%
  to the new (latest ready) revision and 100-P% to the last revision rolled out at 100%;
- promote: remove `canaryTrafficPercent`, so the latest revision takes 100%;
- rollback: set `canaryTrafficPercent: 0`, so the previous rolled-out revision takes 100%.
KServe does not range-check the percent; Knative rejects the generated traffic later, so it is
checked here. Canary via `canaryTrafficPercent` exists only in Knative (serverless) mode.

Patches go through `kubectl patch` (JSON Patch for start, since the storage URI of a custom
container sits in a list; JSON merge patch otherwise). `status` reads
`status.components.<component>.traffic` (copied from the Knative Service's status).
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

Doc = dict[str, Any]
RESOURCE = "inferenceservice"  # kubectl accepts the singular name and the `isvc` short name


class CanaryError(RuntimeError):
    """A canary operation that cannot proceed; the message says why and what to do."""


@dataclass(frozen=True)
class Patch:
    kind: str  # "json" (RFC 6902) or "merge" (RFC 7386), kubectl's --type
    body: Any

    def text(self) -> str:
        return json.dumps(self.body, separators=(",", ":"), sort_keys=True)


def check_percent(percent: int) -> int:
    if not 0 <= percent <= 100:
        raise CanaryError(f"--percent must be within 0..100, got {percent}")
    return percent


def _component(isvc: Doc, component: str) -> Doc:
    spec = isvc.get("spec") or {}
    part = spec.get(component)
    if not isinstance(part, dict):
        name = (isvc.get("metadata") or {}).get("name", "?")
        raise CanaryError(f"InferenceService {name} has no spec.{component}")
    return part


def _check_mode(isvc: Doc) -> None:
    annotations = (isvc.get("metadata") or {}).get("annotations") or {}
    mode = annotations.get("serving.kserve.io/deploymentMode", "")
    # Legacy spellings are normalised by KServe (pkg/constants ParseDeploymentMode).
    if mode in ("Standard", "RawDeployment", "ModelMesh"):
        raise CanaryError(
            f"canaryTrafficPercent needs Knative (serverless) deployment mode; this "
            f"InferenceService uses {mode}"
        )


def start_patch(isvc: Doc, storage_uri: str, percent: int, component: str = "predictor") -> Patch:
    """JSON Patch that moves the component to `storage_uri` with `percent`% canary traffic."""
    check_percent(percent)
    _check_mode(isvc)
    part = _component(isvc, component)
    base = f"/spec/{component}"
    ops: list[Doc] = []
    model = part.get("model")
    if isinstance(model, dict):
        ops.append({"op": "add", "path": f"{base}/model/storageUri", "value": storage_uri})
    else:
        ops += _container_storage_ops(part, base, storage_uri)
    # `add` on an existing member replaces it (RFC 6902 section 4.1).
    ops.append({"op": "add", "path": f"{base}/canaryTrafficPercent", "value": percent})
    return Patch("json", ops)


def _container_storage_ops(part: Doc, base: str, storage_uri: str) -> list[Doc]:
    containers = part.get("containers") or []
    for i, container in enumerate(containers):
        if not isinstance(container, dict):
            continue
        for j, env in enumerate(container.get("env") or []):
            if isinstance(env, dict) and env.get("name") == "STORAGE_URI":
                path = f"{base}/containers/{i}/env/{j}"
                # `test` makes the patch fail instead of overwriting the wrong entry if the
                # list changed between our read and the API server applying the patch.
                return [
                    {"op": "test", "path": f"{path}/name", "value": "STORAGE_URI"},
                    {"op": "replace", "path": f"{path}/value", "value": storage_uri},
                ]
    raise CanaryError(
        "no storage URI to replace: spec has neither model.storageUri nor a "
        "container env STORAGE_URI"
    )


def promote_patch() -> Patch:
    # In a merge patch, null deletes the key (RFC 7386); idempotent when it is already absent.
    return Patch("merge", {"spec": {"predictor": {"canaryTrafficPercent": None}}})


def rollback_patch() -> Patch:
    return Patch("merge", {"spec": {"predictor": {"canaryTrafficPercent": 0}}})


def for_component(patch: Patch, component: str) -> Patch:
    if patch.kind != "merge" or component == "predictor":
        return patch
    return Patch("merge", {"spec": {component: patch.body["spec"]["predictor"]}})


# --- status ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrafficRow:
    revision: str
    percent: int
    tag: str
    latest: bool
    rolled_out: str  # "latest", "previous" or ""


def traffic_rows(isvc: Doc, component: str = "predictor") -> list[TrafficRow]:
    status = ((isvc.get("status") or {}).get("components") or {}).get(component) or {}
    latest_rolled = status.get("latestRolledoutRevision")
    previous_rolled = status.get("previousRolledoutRevision")
    latest_ready = status.get("latestReadyRevision", "")
    rows = []
    for target in status.get("traffic") or []:
        # A `latestRevision: true` target may omit revisionName; it is the latest ready one.
        revision = target.get("revisionName") or (
            latest_ready if target.get("latestRevision") else ""
        )
        rolled = (
            "latest"
            if revision and revision == latest_rolled
            else "previous"
            if revision and revision == previous_rolled
            else ""
        )
        rows.append(
            TrafficRow(
                revision,
                int(target.get("percent") or 0),
                target.get("tag") or "",
                bool(target.get("latestRevision")),
                rolled,
            )
        )
    return rows


def status_report(isvc: Doc, component: str = "predictor") -> str:
    meta = isvc.get("metadata") or {}
    spec_part = (isvc.get("spec") or {}).get(component) or {}
    status = isvc.get("status") or {}
    comp = (status.get("components") or {}).get(component) or {}
    ready = next(
        (c.get("status") for c in status.get("conditions") or [] if c.get("type") == "Ready"),
        "Unknown",
    )
    canary = spec_part.get("canaryTrafficPercent")
    lines = [
        f"InferenceService {meta.get('namespace', '?')}/{meta.get('name', '?')} ({component})",
        f"  ready: {ready}   url: {status.get('url') or comp.get('url') or '-'}",
        f"  spec canaryTrafficPercent: {'-' if canary is None else canary}",
        f"  latestCreated: {comp.get('latestCreatedRevision', '-')}   "
        f"latestReady: {comp.get('latestReadyRevision', '-')}",
        f"  latestRolledout: {comp.get('latestRolledoutRevision', '-')}   "
        f"previousRolledout: {comp.get('previousRolledoutRevision', '-')}",
        "",
    ]
    rows = traffic_rows(isvc, component)
    if not rows:
        lines.append("  no traffic targets in status yet (not reconciled, or not Knative mode)")
        return "\n".join(lines) + "\n"
    header = ("REVISION", "PERCENT", "TAG", "LATEST", "ROLLED-OUT")
    table = [header] + [
        (
            r.revision or "-",
            f"{r.percent}%",
            r.tag or "-",
            "yes" if r.latest else "no",
            r.rolled_out or "-",
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        lines.append(
            "  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        )
    return "\n".join(lines) + "\n"


# --- kubectl ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kubectl:
    """Runs `kubectl` from PATH (or $KUBECTL) against one object: an InferenceService unless
    `resource` and `kind` say otherwise (`kninfer experiment` drives an InferenceGraph)."""

    name: str
    namespace: str | None
    binary: str = ""
    resource: str = RESOURCE
    kind: str = "InferenceService"

    def _base(self) -> list[str]:
        from kninfer.settings import kubectl_from_env

        binary = self.binary or kubectl_from_env() or shutil.which("kubectl")
        if not binary:
            raise CanaryError("kubectl not found on PATH (set KUBECTL to its path)")
        ns = ["--namespace", self.namespace] if self.namespace else []
        return [binary, *ns]

    def _run(self, args: Sequence[str]) -> str:
        command = [*self._base(), *args]
        try:
            result = subprocess.run(
                command, capture_output=True, text=True, timeout=60, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise CanaryError(f"{shlex.join(command)} failed: {exc}") from None
        if result.returncode != 0:
            raise CanaryError(
                f"{shlex.join(command)} exited {result.returncode}: "
                f"{result.stderr.strip() or result.stdout.strip()}"
            )
        return result.stdout

    def get(self) -> Doc:
        out = self._run(["get", self.resource, self.name, "--output", "json"])
        what = f"kubectl get {self.resource} {self.name}"
        try:
            doc = json.loads(out)
        except ValueError:
            raise CanaryError(f"{what} did not return JSON") from None
        if not isinstance(doc, dict) or doc.get("kind") != self.kind:
            raise CanaryError(f"{what} returned no {self.kind}")
        return doc

    def patch_args(self, patch: Patch) -> list[str]:
        return ["patch", self.resource, self.name, "--type", patch.kind, "--patch", patch.text()]

    def patch(self, patch: Patch) -> str:
        return self._run(self.patch_args(patch))

    def describe(self, patch: Patch) -> str:
        """The exact command `patch` would run, for --dry-run."""
        ns = ["--namespace", self.namespace] if self.namespace else []
        return shlex.join(["kubectl", *ns, *self.patch_args(patch)])
