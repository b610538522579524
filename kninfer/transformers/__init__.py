"""Transformers: `kserve.Model` subclasses that pre- and post-process around a predictor call.

`kninfer serve --transformer NAME` takes a built-in name or `package.module:Class` for your own
subclass of `kninfer.transformers.base.Transformer` (importable on PYTHONPATH). A transformer
reaches its predictor over the wire (--predictor-host), never by import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kninfer.transformers.base import Transformer

BUILTIN: dict[str, str] = {
    "passthrough": "kninfer.transformers.base:Transformer",
    "tabular": "kninfer.transformers.tabular:TabularTransformer",
    "iris": "kninfer.transformers.tabular:IrisTransformer",
}


def transformer_class(name: str) -> type[Transformer]:
    """The class `--transformer NAME` names: a built-in or `module:Class`."""
    from kninfer.errors import ModelLoadError
    from kninfer.references import import_class
    from kninfer.transformers.base import Transformer

    target = BUILTIN.get(name, name)
    if ":" not in target:
        raise ModelLoadError(
            f"unknown transformer '{name}'; choose one of {', '.join(BUILTIN)} or give "
            "package.module:Class"
        )
    cls = import_class(target, "transformer")
    if not (isinstance(cls, type) and issubclass(cls, Transformer)):
        raise ModelLoadError(
            f"'{target}' is not a subclass of kninfer.transformers.base.Transformer"
        )
    result: type[Transformer] = cls
    return result
