"""The `kninfer` command. Nothing here runs at import: `main()` parses and dispatches, and each
subcommand imports what it needs only when chosen (so `kninfer validate` never imports kserve and
`kninfer serve` imports only the served model's framework).

`serve` options are generated from `ServeSettings`: every field `foo_bar` is `--foo-bar` and also
`KNINFER_FOO_BAR` in the environment; a flag given on the command line wins.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import types
import typing
from collections.abc import Sequence
from typing import Any

_STARTED = time.perf_counter()


def _flag_type(annotation: Any) -> tuple[Any, Any]:
    """(argparse type, choices) for a settings field annotation."""
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin in (typing.Union, types.UnionType) and len(args) == 1:
        return _flag_type(args[0])
    if origin is typing.Literal:
        return str, list(args)
    if annotation in (int, float):
        return annotation, None
    return str, None


def add_serve_options(parser: argparse.ArgumentParser) -> None:
    from kninfer.settings import ServeSettings

    for name, info in ServeSettings.model_fields.items():
        # KServe's spelling (`--model_name`, `--predictor_host`, `--http_port`) is accepted too:
        # KServe appends it to custom transformer containers (kserve transformer_custom.go).
        flags = ["--" + name.replace("_", "-")] + (["--" + name] if "_" in name else [])
        help_text = f"{info.description} [env KNINFER_{name.upper()}]"
        annotation = info.annotation
        if annotation is bool or annotation == (bool | None):
            parser.add_argument(*flags, dest=name, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=help_text)
            continue
        kind, choices = _flag_type(annotation)
        parser.add_argument(*flags, dest=name, type=kind, choices=choices,
                            default=argparse.SUPPRESS, help=help_text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kninfer",
        description="Serve scikit-learn, MLflow and PyTorch models on KServe/Knative.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve a model (default: the embedded iris model)")
    add_serve_options(serve)
    serve.set_defaults(handler=_cmd_serve)

    from kninfer.cli.deploy import add_deploy_commands

    add_deploy_commands(sub)  # render, validate, canary

    audit = sub.add_parser(
        "audit", help="audit a .skops model once; write a hash-pinned joblib copy that loads "
                      "fast (serve it with --model-sha256)")
    audit.add_argument("model_dir", metavar="MODEL_DIR", help="directory holding model.skops")
    audit.add_argument("--skops-trusted", default="",
                       help="comma-separated types to trust beyond skops' own list")
    audit.set_defaults(handler=_cmd_audit)

    event = sub.add_parser("event", help="send CloudEvents to a kninfer service")
    event_sub = event.add_subparsers(dest="event_command", required=True)
    send = event_sub.add_parser("send", help="post a V2 request as a CloudEvent, print the reply")
    send.add_argument("--url", required=True,
                      help="e.g. http://HOST/ or http://HOST/v2/models/iris/infer")
    send.add_argument("--file", required=True, help="a V2 inference request (JSON)")
    send.add_argument("--structured", action="store_true",
                      help="structured content mode (default: binary mode, ce-* headers)")
    send.add_argument("--model", help="kninfermodel extension: picks the model on POST /")
    send.add_argument("--id", help="event id (repeat one to try redelivery); default: a UUID")
    send.add_argument("--source", default="kninfer/cli", help="event source")
    send.add_argument("--timeout", type=float, default=30.0, help="seconds")
    send.set_defaults(handler=_cmd_event_send)

    return parser


def _cmd_audit(options: argparse.Namespace) -> int:
    from pathlib import Path

    from kninfer.errors import ModelLoadError

    sys.argv = sys.argv[:1]  # `import kserve` parses sys.argv (see _cmd_serve)
    from kninfer.predictors.sklearn_audit import audit

    try:
        target, digest = audit(Path(options.model_dir), options.skops_trusted)
    except ModelLoadError as exc:
        print(f"kninfer audit: {exc}", file=sys.stderr)
        return 1
    print(f"{target}\nsha256 {digest}\nserve with --model-sha256 {digest} "
          "(KNINFER_MODEL_SHA256)")
    return 0


def _cmd_event_send(options: argparse.Namespace) -> int:
    from kninfer.cli.event import cmd_event_send

    return cmd_event_send(options)


def _cmd_serve(options: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from kninfer.settings import ServeSettings

    given = {k: v for k, v in vars(options).items() if k not in ("command", "handler")}
    try:
        settings = ServeSettings(**given)
    except ValidationError as exc:
        print(f"kninfer serve: {exc.errors()[0]['msg']}", file=sys.stderr)
        return 2
    # `import kserve` parses sys.argv with its own argparse at import time
    # (kserve/model_server.py); hide our flags from it so the two parsers never disagree.
    sys.argv = sys.argv[:1]
    from kninfer.server.startup import serve

    return serve(settings, started=_STARTED)


def main(argv: Sequence[str] | None = None) -> int:
    # Start-up allocates a few hundred thousand objects that live as long as the process
    # (modules, the model), and the cyclic GC would walk them again and again while they are
    # made: ~0.1 s of a ~1.2 s cold start here (A/B in README "Where the cold start goes").
    # Collection is off until `kninfer serve` starts serving (kninfer.server.startup turns it on
    # after gc.freeze()) or until any other command returns.
    gc.disable()
    try:
        parser = build_parser()
        options = parser.parse_args(argv)
        result: int = options.handler(options)
        return result
    finally:
        gc.enable()


if __name__ == "__main__":
    sys.exit(main())
