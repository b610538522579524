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
from collections.abc import Sequence

from kninfer.cli.audit import cmd_audit
from kninfer.cli.compile import add_compile_command
from kninfer.cli.deploy import add_deploy_commands
from kninfer.cli.event import cmd_event_send
from kninfer.cli.profile import add_profile_command
from kninfer.cli.serve import add_serve_options, cmd_serve

# When the process reached kninfer's code: the cold-start log's `imports_ms` counts from here.
STARTED = time.perf_counter()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kninfer",
        description="Serve scikit-learn, MLflow and PyTorch models on KServe/Knative.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve a model (default: the embedded iris model)")
    add_serve_options(serve)
    serve.set_defaults(handler=cmd_serve)

    add_deploy_commands(sub)  # render, validate, canary

    audit = sub.add_parser(
        "audit",
        help="audit a .skops model once; write a hash-pinned joblib copy that loads "
        "fast (serve it with --model-sha256)",
    )
    audit.add_argument("model_dir", metavar="MODEL_DIR", help="directory holding model.skops")
    audit.add_argument(
        "--skops-trusted", default="", help="comma-separated types to trust beyond skops' own list"
    )
    audit.set_defaults(handler=cmd_audit)

    add_compile_command(sub)
    add_profile_command(sub)

    event = sub.add_parser("event", help="send CloudEvents to a kninfer service")
    event_sub = event.add_subparsers(dest="event_command", required=True)
    send = event_sub.add_parser("send", help="post a V2 request as a CloudEvent, print the reply")
    send.add_argument(
        "--url", required=True, help="e.g. http://HOST/ or http://HOST/v2/models/iris/infer"
    )
    send.add_argument("--file", required=True, help="a V2 inference request (JSON)")
    send.add_argument(
        "--structured",
        action="store_true",
        help="structured content mode (default: binary mode, ce-* headers)",
    )
    send.add_argument("--model", help="kninfermodel extension: picks the model on POST /")
    send.add_argument("--id", help="event id (repeat one to try redelivery); default: a UUID")
    send.add_argument("--source", default="kninfer/cli", help="event source")
    send.add_argument("--timeout", type=float, default=30.0, help="seconds")
    send.set_defaults(handler=cmd_event_send)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Start-up allocates a few hundred thousand objects that live as long as the process
    # (modules, the model), and the cyclic GC would walk them again and again while they are
    # made (measured: docs/performance.md#figures-behind-the-code).
    # Collection is off until `kninfer serve` starts serving (kninfer.server.startup turns it on
    # after gc.freeze()) or until any other command returns.
    gc.disable()
    try:
        parser = build_parser()
        options = parser.parse_args(argv)
        options.started = STARTED
        result: int = options.handler(options)
        return result
    finally:
        gc.enable()


if __name__ == "__main__":
    sys.exit(main())
