"""Loading the YAML files users hand us (pipeline.yaml, release files) with bounds.

PyYAML's SafeLoader builds no arbitrary objects, but an alias is a reference: a file of a
few hundred bytes with aliases nested nine levels deep ("billion laughs") stands for
9**9 nodes. Loading shares them, but everything that walks the result (validation, line
numbers, printing) walks the expansion, for minutes and gigabytes. So the loader counts,
while composing, how many nodes the aliases stand for, and refuses the document past
MAX_ALIAS_NODES; recursive aliases (a node that contains itself) are refused outright.
A real pipeline file uses a few aliases for shared blocks, far below the bound.

Scalars are bounded too (MAX_SCALAR_CHARS, refused while composing, before any is
constructed): PyYAML turns a plain scalar of digits into an int (past Python's int digit
limit a ValueError) and a sexagesimal one (``1:59:59:...``) into an int in quadratic time.
A value the constructors cannot make (an int past the digit limit, a date like
2001-13-40) is a YamlValueError, never a bare ValueError.
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_FILE_BYTES = 1024 * 1024
MAX_ALIAS_NODES = 5_000
MAX_SCALAR_CHARS = 4096
"""One value (or key): far above any account id, bucket, host or path in a pipeline file."""


class YamlBoundsError(ValueError):
    """The document is larger than the bounds allow (message without a file name)."""


class YamlValueError(ValueError):
    """A scalar the YAML constructors cannot turn into a value (message without a file name)."""


class _BoundedLoader(yaml.SafeLoader):
    def __init__(self, stream: str, max_alias_nodes: int):
        super().__init__(stream)
        self._limit = max_alias_nodes
        self._expanded = 0
        self._sizes: dict[int, int] = {}
        self._open: list[yaml.Node] = []  # the collections being composed, outermost first

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if parent is not None:
            self._open.append(parent)
        try:
            if self.check_event(yaml.AliasEvent):
                self._count_alias(self.peek_event())  # type: ignore[no-untyped-call]
            elif self.check_event(yaml.ScalarEvent):
                self._check_scalar(self.peek_event())  # type: ignore[no-untyped-call]
            return super().compose_node(parent, index)
        finally:
            if parent is not None:
                self._open.pop()

    def _check_scalar(self, event: Any) -> None:
        if len(event.value) > MAX_SCALAR_CHARS:
            raise YamlBoundsError(
                f"line {event.start_mark.line + 1}: a value longer than {MAX_SCALAR_CHARS} characters"
            )

    def _count_alias(self, event: Any) -> None:
        target = self.anchors.get(event.anchor)
        if target is None:
            return  # undefined: PyYAML reports it
        line = event.start_mark.line + 1
        if any(target is node for node in self._open):
            raise YamlBoundsError(f"line {line}: an alias refers to the node it is in (an alias loop)")
        self._expanded += self._size(target)
        if self._expanded > self._limit:
            raise YamlBoundsError(
                f"line {line}: aliases expand to more than {self._limit} nodes (a 'billion laughs' document?)"
            )

    def _size(self, node: yaml.Node) -> int:
        """How many nodes ``node`` stands for once every alias in it is expanded (at most
        a little past the limit: counting stops there)."""
        known = self._sizes.get(id(node))
        if known is not None:
            return known
        total = 1
        if isinstance(node, yaml.SequenceNode):
            for item in node.value:
                total += self._size(item)
                if total > self._limit:
                    break
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                total += self._size(key) + self._size(value)
                if total > self._limit:
                    break
        self._sizes[id(node)] = total
        return total


def compose_and_load(text: str, *, max_alias_nodes: int = MAX_ALIAS_NODES) -> tuple[yaml.Node | None, Any]:
    """The document's node graph (for line numbers) and its Python value, refusing a
    document too large (YamlBoundsError: the file, a value, or aliases that expand past
    the bound) or with a value that cannot be constructed (YamlValueError).
    yaml.YAMLError and RecursionError (deep nesting) pass through to the caller."""
    if len(text) > MAX_FILE_BYTES:
        raise YamlBoundsError(f"larger than {MAX_FILE_BYTES // 1024} KiB")
    loader = _BoundedLoader(text, max_alias_nodes)
    try:
        node = loader.get_single_node()
        try:
            data = loader.construct_document(node) if node is not None else None
        except (YamlBoundsError, RecursionError):
            raise
        except (ValueError, OverflowError) as exc:  # int digit limit, a date like 2001-13-40
            raise YamlValueError(f"a value that cannot be read: {str(exc)[:200]}") from None
    finally:
        loader.dispose()
    return node, data


def read_bounded(path: Any) -> str:
    """A YAML file's text, refusing (YamlBoundsError) one larger than MAX_FILE_BYTES
    without reading it whole. OSError and UnicodeDecodeError pass through."""
    with open(path, "rb") as handle:
        raw = handle.read(MAX_FILE_BYTES + 1)
    if len(raw) > MAX_FILE_BYTES:
        raise YamlBoundsError(f"larger than {MAX_FILE_BYTES // 1024} KiB")
    return raw.decode("utf-8")
