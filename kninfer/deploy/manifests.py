"""Manifest files into documents: what `kninfer validate FILE...` reads, before any schema.

Files are named directly or found as *.yaml / *.yml / *.json under named directories (sorted).
Each file is read as a YAML stream (JSON is YAML), empty documents (a trailing `---`) skipped.
Duplicate mapping keys are refused, as kubectl's strict decoding refuses them
(`kubectl apply --validate=strict`, the kubectl default since 1.32), where PyYAML would silently
keep the last value.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


class DuplicateKey(ValueError):
    def __init__(self, key: object, line: int) -> None:
        super().__init__(f"duplicate key {key!r} at line {line}")
        self.key = key
        self.line = line


class ManifestError(ValueError):
    """A document that does not parse; the documents before it were read."""

    def __init__(self, index: int, rule: str, message: str) -> None:
        super().__init__(message)
        self.index = index  # 1-based index of the document that failed
        self.rule = rule  # "duplicate-key" or "yaml"
        self.message = message


def expand(paths: Iterable[Path]) -> list[Path]:
    """Files named directly, plus *.yaml / *.yml / *.json under named directories (sorted)."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out += sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix in MANIFEST_SUFFIXES
            )
        else:
            out.append(path)
    return out


def strict_loader() -> type:
    """A YAML loader (the C one when available) that refuses duplicate mapping keys, which
    kubectl's strict decoding rejects and PyYAML would silently resolve to the last value."""
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class StrictLoader(base):  # type: ignore[valid-type,misc]
        pass

    def construct_mapping(loader: Any, node: Any, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=True)
            if key in seen:
                raise DuplicateKey(key, key_node.start_mark.line + 1)
            seen.add(key)
        return dict(yaml.SafeLoader.construct_mapping(loader, node, deep=True))

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return StrictLoader


def documents(text: str) -> Iterator[tuple[int, Any]]:
    """(1-based index, document) for each non-empty document of a YAML stream, parsed lazily.
    A document that does not parse raises ManifestError, and ends the stream."""
    import yaml

    stream = yaml.load_all(text, Loader=strict_loader())  # noqa: S506 - a safe loader
    index = 0
    while True:
        index += 1
        try:
            doc = next(stream)
        except StopIteration:
            return
        except DuplicateKey as exc:
            raise ManifestError(index, "duplicate-key", str(exc)) from None
        except yaml.YAMLError as exc:
            raise ManifestError(index, "yaml", str(exc).replace("\n", " ")) from None
        if doc is None:  # an empty document, e.g. after a trailing `---`
            index -= 1
            continue
        yield index, doc
