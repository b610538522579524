"""`kninfer serve`: options generated from ServeSettings, then kninfer.server.startup.

Every settings field `foo_bar` is `--foo-bar` and also `KNINFER_FOO_BAR` in the environment; a
flag given on the command line wins. Nothing heavy is imported until the command runs.
"""

from __future__ import annotations

import argparse
import sys
import types
import typing
from typing import Any

from kninfer._compat.argv import hide_argv_from_kserve


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
        alias = info.validation_alias
        envs = [c for c in getattr(alias, "choices", ()) if isinstance(c, str) and c.isupper()]
        help_text = f"{info.description} [env {', '.join(envs) or 'KNINFER_' + name.upper()}]"
        annotation = info.annotation
        if annotation is bool or annotation == (bool | None):
            parser.add_argument(
                *flags,
                dest=name,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=help_text,
            )
            continue
        kind, choices = _flag_type(annotation)
        parser.add_argument(
            *flags, dest=name, type=kind, choices=choices, default=argparse.SUPPRESS, help=help_text
        )


def cmd_serve(options: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from kninfer.settings import ServeSettings

    given = {k: v for k, v in vars(options).items() if k not in ("command", "handler", "started")}
    try:
        settings = ServeSettings(**given)
    except ValidationError as exc:
        print(f"kninfer serve: {exc.errors()[0]['msg']}", file=sys.stderr)
        return 2
    hide_argv_from_kserve()  # our flags are parsed; kserve's import-time parser must not see them
    from kninfer.server.startup import serve

    return serve(settings, started=options.started)  # set by kninfer.cli.main
