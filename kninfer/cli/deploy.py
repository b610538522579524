"""The `render`, `validate`, `canary` and `experiment` subcommands. Registering them imports
nothing heavy; each handler imports its module only when chosen."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from kninfer.deploy import VENDORED_CRDS


def add_deploy_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    render = sub.add_parser(
        "render",
        help="render KServe and Knative manifests from a deploy config",
        description="Writes OUTDIR/kserve/<name>.yaml, OUTDIR/knative/<name>.yaml and, with "
        "eventing on, OUTDIR/knative/<name>-eventing.yaml, then prints each "
        "service's exposure (cluster-local unless the config says exposure: "
        "public) and its in-cluster address.",
    )
    render.add_argument("configs", nargs="+", type=Path, metavar="CONFIG")
    render.add_argument("-o", "--output", type=Path, default=Path("."), metavar="OUTDIR")
    render.add_argument("--image", help="override the image (the GPU image for GPU configs)")
    render.add_argument(
        "--variant",
        choices=["kserve", "knative", "both"],
        default="both",
        help="which manifests: the InferenceService, the plain Knative Service, or both (default)",
    )
    render.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if files under OUTDIR differ (drift check)",
    )
    render.set_defaults(handler=_cmd_render)

    validate = sub.add_parser(
        "validate",
        help="validate manifests offline against CRD schemas",
        description="Checks every document against the openAPIV3Schema of the CRDs in --crds "
        "(e.g. `kubectl get crd NAME -o yaml > DIR/NAME.yaml`), strictly, as "
        "`kubectl apply --validate=strict` and the admission webhooks would.",
    )
    validate.add_argument(
        "files", nargs="+", type=Path, metavar="FILE", help="YAML/JSON files or directories"
    )
    validate.add_argument(
        "--crds",
        type=Path,
        default=VENDORED_CRDS,
        metavar="DIR",
        help="directory of CRD YAML files (default: the KServe 0.20 and "
        "Knative 1.23 CRDs shipped with kninfer)",
    )
    validate.add_argument("-q", "--quiet", action="store_true", help="print problems only")
    validate.set_defaults(handler=_cmd_validate)

    canary = sub.add_parser("canary", help="canary rollout of an InferenceService (Knative mode)")
    actions = canary.add_subparsers(dest="action", required=True)
    for action, text in (
        ("start", "send PERCENT%% of traffic to a new model"),
        ("promote", "send 100%% to the latest revision"),
        ("rollback", "send 100%% back to the previous rolled-out revision"),
        ("status", "show the traffic split"),
    ):
        parser = actions.add_parser(action, help=text)
        parser.add_argument("--name", required=True, help="InferenceService name")
        parser.add_argument("--namespace", "-n", help="default: kubectl's current namespace")
        parser.add_argument(
            "--component", choices=("predictor", "transformer"), default="predictor"
        )
        if action != "status":
            parser.add_argument(
                "--dry-run",
                action="store_true",
                help="print the patch and the kubectl command; change nothing",
            )
        if action in ("start", "status"):
            parser.add_argument(
                "--from-file",
                type=Path,
                metavar="FILE",
                help="read the InferenceService from FILE instead of kubectl get",
            )
        if action == "start":
            parser.add_argument("--storage-uri", required=True)
            parser.add_argument("--percent", type=int, required=True)
        if action == "status":
            parser.add_argument("--output", "-o", choices=("table", "json"), default="table")
        parser.set_defaults(handler=_cmd_canary)

    experiment = sub.add_parser(
        "experiment", help="A/B experiment: the traffic split of a rendered InferenceGraph"
    )
    steps = experiment.add_subparsers(dest="action", required=True)
    weights = steps.add_parser(
        "weights",
        help="set each variant's share of requests (whole percents summing to 100)",
        description="Patches the weights of the root Splitter node of InferenceGraph NAME.",
    )
    status = steps.add_parser("status", help="show each variant's service and weight")
    for parser in (weights, status):
        parser.add_argument("name", metavar="NAME", help="InferenceGraph name (the config's name)")
        parser.add_argument(
            "--namespace",
            "-n",
            help="default: kubectl's current namespace, or the namespace in --from-file",
        )
        parser.add_argument(
            "--from-file",
            type=Path,
            metavar="FILE",
            help="read the InferenceGraph from FILE (e.g. kserve/NAME.yaml) instead of kubectl get",
        )
        parser.set_defaults(handler=_cmd_experiment)
    weights.add_argument("weights", nargs="+", metavar="VARIANT=WEIGHT")
    weights.add_argument(
        "--dry-run",
        action="store_true",
        help="print the patch and the kubectl command; change nothing",
    )


def _cmd_render(options: argparse.Namespace) -> int:
    from kninfer.deploy.config import ConfigError, load_config
    from kninfer.deploy.render import VARIANTS, exposures, knative_gap, policies, render, write

    variants = VARIANTS if options.variant == "both" else (options.variant,)

    status = 0
    for path in options.configs:
        try:
            config = load_config(path)
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            status = 2
            continue
        if options.image:
            if config.gpu_enabled:
                config = config.model_copy(
                    update={"gpu": config.gpu.model_copy(update={"image": options.image})}
                )
            else:
                config = config.model_copy(update={"image": options.image})
        try:
            files = render(config, path.as_posix(), variants)
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            status = 2
            continue
        gap = knative_gap(config) if "knative" in variants else None
        if gap is not None:
            print(f"{path}: knative/{config.name}.yaml not rendered: {gap}", file=sys.stderr)
        if options.check:
            for relative, text in sorted(files.items()):
                target = options.output / relative
                current = target.read_text() if target.exists() else None
                if current != text:
                    what = "missing" if current is None else "differs from the rendered output"
                    print(
                        f"{target}: {what}; run `kninfer render {path} -o {options.output}`",
                        file=sys.stderr,
                    )
                    status = max(status, 1)
            continue
        for written in write(files, options.output):
            print(written)
        for line in exposures(config, variants) + policies(config, variants):
            print(line)
    return status


def _cmd_validate(options: argparse.Namespace) -> int:
    from kninfer.deploy.crd_store import CrdError, SchemaStore
    from kninfer.deploy.manifests import expand
    from kninfer.deploy.validate import validate_file

    try:
        store = SchemaStore(options.crds)
    except CrdError as exc:
        print(f"kninfer validate: {exc}", file=sys.stderr)
        return 2
    files = expand(options.files)
    documents = errors = 0
    for path in files:
        count, problems = validate_file(path, store)
        documents += count
        for problem in problems:
            print(problem)
            errors += problem.severity == "error"
    if not options.quiet:
        verdict = "valid" if errors == 0 else f"{errors} error(s)"
        print(f"{documents} document(s) in {len(files)} file(s): {verdict}", file=sys.stderr)
    return 1 if errors else 0


def _cmd_canary(options: argparse.Namespace) -> int:
    from kninfer.deploy import canary

    kubectl = canary.Kubectl(options.name, options.namespace)
    try:
        if options.action == "status":
            isvc = _read_isvc(options, kubectl)
            if options.output == "json":
                rows = [row.__dict__ for row in canary.traffic_rows(isvc, options.component)]
                print(json.dumps(rows, indent=2, sort_keys=True))
            else:
                sys.stdout.write(canary.status_report(isvc, options.component))
            return 0
        if options.action == "start":
            isvc = _read_isvc(options, kubectl)
            if options.namespace is None and options.from_file is not None:
                # The rendered file says where the InferenceService lives.
                namespace = (isvc.get("metadata") or {}).get("namespace")
                kubectl = canary.Kubectl(options.name, namespace)
            patch = canary.start_patch(
                isvc, options.storage_uri, options.percent, options.component
            )
        elif options.action == "promote":
            patch = canary.for_component(canary.promote_patch(), options.component)
        else:
            patch = canary.for_component(canary.rollback_patch(), options.component)
        return _apply(kubectl, patch, options.dry_run)
    except canary.CanaryError as exc:
        print(f"kninfer canary {options.action}: {exc}", file=sys.stderr)
        return 1


def _cmd_experiment(options: argparse.Namespace) -> int:
    from kninfer.deploy import canary, experiment

    kubectl = canary.Kubectl(
        options.name, options.namespace, resource=experiment.RESOURCE, kind=experiment.KIND
    )
    try:
        # Arguments first: a bad weight is refused before kubectl is run at all.
        weights = experiment.parse_weights(options.weights) if options.action == "weights" else {}
        if options.from_file is not None:
            graph = _read_from_file(options.from_file, experiment.KIND, options.name)
            if options.namespace is None:
                # The rendered file says where the InferenceGraph lives.
                namespace = (graph.get("metadata") or {}).get("namespace")
                kubectl = canary.Kubectl(
                    options.name, namespace, resource=experiment.RESOURCE, kind=experiment.KIND
                )
        else:
            graph = kubectl.get()
        if options.action == "status":
            sys.stdout.write(experiment.weights_report(graph))
            return 0
        patch = experiment.weights_patch(graph, weights)
        return _apply(kubectl, patch, options.dry_run)
    except canary.CanaryError as exc:
        print(f"kninfer experiment {options.action}: {exc}", file=sys.stderr)
        return 1


def _apply(kubectl: Any, patch: Any, dry_run: bool) -> int:
    """Print the patch and the kubectl command with --dry-run, else run it."""
    if dry_run:
        print(json.dumps(patch.body, indent=2, sort_keys=True))
        print(kubectl.describe(patch))
        return 0
    sys.stdout.write(kubectl.patch(patch))
    return 0


def _read_isvc(options: argparse.Namespace, kubectl: object) -> dict[str, Any]:
    from kninfer.deploy.canary import Kubectl

    if options.from_file is not None:
        return _read_from_file(options.from_file, "InferenceService", options.name)
    assert isinstance(kubectl, Kubectl)
    return kubectl.get()


def _read_from_file(path: Path, kind: str, name: str) -> dict[str, Any]:
    """The document of `kind` named `name` in a (multi-document) YAML or JSON file."""
    import yaml

    from kninfer.deploy.canary import CanaryError

    try:
        docs = list(yaml.safe_load_all(path.read_text()))
    except (OSError, yaml.YAMLError) as exc:
        raise CanaryError(f"cannot read {path}: {exc}") from None
    for doc in docs:
        if (
            isinstance(doc, dict)
            and doc.get("kind") == kind
            and (doc.get("metadata") or {}).get("name") == name
        ):
            return doc
    raise CanaryError(f"{path} has no {kind} named {name}")
